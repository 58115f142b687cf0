"""End to end with real processes: `lockd start --config FILE` (auth server and agent in
one process, TLS between them as in production), a sidecar process using AgentClient,
and a lock created with AuthClient over the admin socket."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lockd.client import AgentClient, AuthClient
from lockd.domain.lock import Lock, LockTarget
from tests.support import eventually, free_port

pytestmark = pytest.mark.slow

SIDECAR = textwrap.dedent(
    """
    import asyncio, json, sys
    from lockd.client import AgentClient, SessionDenied
    from lockd.domain.identity import Identity

    async def main() -> None:
        async with AgentClient.connect(sys.argv[1]) as agent:
            try:
                async with agent.open_session(Identity(user="alice", login="root")) as session:
                    print(json.dumps({"opened": session.session_id}), flush=True)
                    termination = await session.terminated()
                    print(json.dumps({"reason": termination.reason,
                                      "lock": termination.lock_name}), flush=True)
            except SessionDenied as denied:
                print(json.dumps({"denied": str(denied)}), flush=True)

    asyncio.run(main())
    """
)


async def read_json_line(process: asyncio.subprocess.Process) -> dict[str, str]:
    assert process.stdout is not None
    async with asyncio.timeout(30):
        line = await process.stdout.readline()
    assert line, "the sidecar ended without a word"
    return json.loads(line)  # type: ignore[no-any-return]


async def run_sidecar(socket: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", SIDECAR, str(socket), stdout=asyncio.subprocess.PIPE
    )


@pytest.fixture
async def lockd_start(tmp_path: Path, socket_dir: Path) -> AsyncIterator[Path]:
    """`lockd start` with auth + agent; yields its data dir; SIGTERM at the end (exit 0)."""
    data_dir = socket_dir / "data"  # short: it holds the Unix sockets
    auth_port, metrics_port = free_port(), free_port()
    config = tmp_path / "lockd.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            cluster_name: e2e.lockd
            data_dir: {data_dir}
            log:
              format: json
              level: info
            auth_service:
              enabled: true
              listen_addr: 127.0.0.1:{auth_port}
              metrics_addr: ""
              heartbeat_interval: 100ms
            agent_service:
              enabled: true
              server_id: e2e-node
              auth_servers: [127.0.0.1:{auth_port}]
              metrics_addr: 127.0.0.1:{metrics_port}
              max_staleness: 30s
            """
        )
    )
    log = (tmp_path / "lockd.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lockd", "start", "--config", str(config),
        stdout=log, stderr=log,
    )  # fmt: skip
    try:
        yield data_dir
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                code = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        finally:
            log.close()
        assert code == 0, (tmp_path / "lockd.log").read_text()[-3000:]


async def test_a_lock_ends_a_sidecar_session_across_real_processes(
    lockd_start: Path, tmp_path: Path
) -> None:
    """The sidecar's session for alice ends with the SPEC §3 text as soon as a lock is
    created over the admin socket; a new session is refused; the audit log and the
    agent's metrics say so."""
    data_dir = lockd_start
    socket = data_dir / "agent.sock"

    async def synced() -> bool:
        if not socket.exists():
            return False
        async with AgentClient.connect(socket) as agent:
            try:
                return (await agent.status()).state == "synced"
            except Exception:
                return False

    await eventually(synced, within=60, interval=0.2, what="lockd start to sync its agent")

    sidecar = await run_sidecar(socket)
    opened = await read_json_line(sidecar)
    assert opened["opened"]

    async with AuthClient.connect(f"unix:{data_dir / 'admin.sock'}") as admin:
        lock, _ = await admin.create_lock(
            Lock("e2e-lock", LockTarget(user="alice"), message="Suspicious activity.")
        )
    assert lock.created_by == "Admin"
    assert await read_json_line(sidecar) == {
        "reason": 'lock targeting User:"alice" is in force: Suspicious activity.',
        "lock": "e2e-lock",
    }
    async with asyncio.timeout(30):
        assert await sidecar.wait() == 0

    refused = await run_sidecar(socket)
    assert await read_json_line(refused) == {
        "denied": 'lock targeting User:"alice" is in force: Suspicious activity.'
    }
    async with asyncio.timeout(30):
        assert await refused.wait() == 0

    def audit_with_rejection() -> list[dict[str, object]] | None:
        # The agent writes a registration burst's audit lines a moment after answering it.
        text = (data_dir / "audit.log").read_text()
        lines = [json.loads(line) for line in text.splitlines()]
        return lines if any(line["event"] == "session.rejected" for line in lines) else None

    audit: list[dict[str, object]] = await eventually(
        audit_with_rejection, what="the rejection in the audit log"
    )
    terminated = [line for line in audit if line["event"] == "session.terminated"]
    assert [(t["session_id"], t["server_id"], t["lock"]) for t in terminated] == [
        (opened["opened"], "e2e-node", "e2e-lock")
    ]
    assert any(line["event"] == "session.rejected" for line in audit)
    assert any(line["event"] == "lock.created" for line in audit)

    # The agent's Prometheus endpoint (port chosen by the fixture, found in the config).
    config = (tmp_path / "lockd.yaml").read_text()
    metrics_addr = config.split("metrics_addr: ")[-1].split()[0]
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10).read()
    )
    assert b'lockd_agent_terminations_total{reason="lock"} 1.0' in body

"""`lockd recover delete-lock`: the way out of a lock on the local admin itself."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockd.client import AuthClient
from lockd.domain.errors import AccessDeniedError
from lockd.domain.lock import Lock, LockTarget
from tests.support import eventually, free_port

LOCKD = str(Path(sys.executable).parent / "lockd")


@pytest.fixture
def config(tmp_path: Path, socket_dir: Path) -> Path:
    path = tmp_path / "lockd.yaml"
    path.write_text(
        f"""
cluster_name: recover.test
data_dir: {tmp_path / "data"}
log: {{format: json, level: warning}}
auth_service:
  enabled: true
  insecure: true
  listen_addr: 127.0.0.1:{free_port()}
  admin_socket: {socket_dir / "admin.sock"}
  metrics_addr: ""
"""
    )
    return path


@pytest.fixture
def server(config: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started auth servers (started by the test), all stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _spawn(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([LOCKD, "auth", "--config", str(config)])


async def _start(config: Path, started: list[subprocess.Popen[bytes]], admin: Path) -> None:
    started.append(_spawn(config))

    async def answers() -> bool:
        async with AuthClient.connect(str(admin)) as client:
            try:
                return await client.ping(1.0)
            except Exception:
                return False

    await eventually(answers, what="the auth server to answer")


def _recover(config: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LOCKD, "recover", "delete-lock", name, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_lock_on_admin_is_lifted_offline_and_audited(
    config: Path, server: list[subprocess.Popen[bytes]], socket_dir: Path, tmp_path: Path
) -> None:
    """Locked out of the admin socket, the operator stops the server, deletes the lock
    offline (refused while the server runs) and gets the admin socket back."""
    admin = socket_dir / "admin.sock"
    await _start(config, server, admin)
    async with AuthClient.connect(str(admin)) as client:
        _, revision = await client.create_lock(Lock("oops", LockTarget(user="Admin"), "mistake"))
        with pytest.raises(
            AccessDeniedError, match=r'^lock targeting User:"Admin" is in force: mistake$'
        ):
            await client.list_locks()

    running = _recover(config, "oops")
    assert running.returncode == 1
    assert f"another lockd auth server (pid {server[0].pid}) is already running" in (running.stderr)

    server[0].terminate()
    assert server[0].wait(timeout=30) == 0
    recovered = _recover(config, "oops")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout == (
        f'lock "oops" has been deleted (revision {revision + 1}); start the auth server again\n'
    )
    missing = _recover(config, "oops")
    assert (missing.returncode, missing.stderr) == (1, 'ERROR: lock "oops" not found\n')

    await _start(config, server, admin)
    async with AuthClient.connect(str(admin)) as client:
        assert await client.list_locks() == []
        assert (await client.status()).revision == revision + 1
    audit = [
        json.loads(line) for line in (tmp_path / "data" / "audit.log").read_text().splitlines()
    ]
    deleted = [event for event in audit if event["event"] == "lock.deleted"]
    assert [(event["name"], event["by"]) for event in deleted] == [("oops", "lockd recover")]


def test_recover_refuses_a_memory_store(tmp_path: Path) -> None:
    """Nothing to repair on disk: exit 2 with the reason."""
    path = tmp_path / "memory.yaml"
    path.write_text(
        f"data_dir: {tmp_path}\nauth_service: {{enabled: true, storage: {{type: memory}}}}\n"
    )
    result = _recover(path, "x")
    assert (result.returncode, result.stderr) == (
        2,
        "ERROR: the memory store keeps nothing on disk: restart the auth server\n",
    )

"""End to end over TLS: real `lockd auth` and `lockd agent` processes on loopback.

The auth server runs with its defaults (mTLS, its CA created in its data dir); the agent
joins with a one-time token minted on the admin socket and the CA pin from the cluster
status, syncs, and enforces a lock on a sidecar session. Restarted without a token, it
comes back with the identity it stored. Whatever a test leaves running is killed at
teardown.
"""

from __future__ import annotations

import asyncio
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.client import AgentClient, AuthClient, SessionDenied
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from tests.support import eventually, free_port

pytestmark = pytest.mark.slow

LOCKD = Path(sys.executable).with_name("lockd")
START_TIMEOUT = 40.0  # a cold start imports grpc and cryptography: slow on a loaded box
WAIT = 20.0


class Processes:
    """Spawns lockd processes with their output in files; kills leftovers at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.spawned: list[tuple[subprocess.Popen[bytes], Path]] = []

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        stderr = self.directory / f"stderr-{len(self.spawned)}.log"
        with stderr.open("wb") as err:
            process = subprocess.Popen(
                [str(LOCKD), *args], stdout=err, stderr=err, stdin=subprocess.DEVNULL
            )
        self.spawned.append((process, stderr))
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        for candidate, path in self.spawned:
            if candidate is process:
                return path.read_text(errors="replace")[-4000:]
        return ""

    async def serving(self, process: subprocess.Popen[bytes], socket_path: Path) -> None:
        """Wait until the process answers health SERVING on its Unix socket."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = process.poll()
            assert code is None, f"lockd exited with {code}: {self.output(process)}"
            if await asyncio.to_thread(socket_path.exists) and await health_serving(socket_path):
                return
            assert time.monotonic() < deadline, f"not serving: {self.output(process)}"
            await asyncio.sleep(0.1)

    async def stop(self, process: subprocess.Popen[bytes]) -> int:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while (code := process.poll()) is None:
            assert time.monotonic() < deadline, f"process {process.pid} did not stop"
            await asyncio.sleep(0.05)
        return code

    def kill_all(self) -> None:
        for process, _ in self.spawned:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


async def health_serving(socket_path: Path) -> bool:
    async with grpc.aio.insecure_channel(f"unix:{socket_path}") as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    manager = Processes(tmp_path)
    try:
        yield manager
    finally:
        manager.kill_all()


def write_yaml(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


async def agent_state(socket_path: Path) -> str:
    async with AgentClient.connect(socket_path) as agent:
        return (await agent.status()).state


async def test_a_joined_agent_enforces_locks_and_restarts_on_its_stored_identity(
    processes: Processes, tmp_path: Path, socket_dir: Path
) -> None:
    """Join with token + pin, sync over mTLS, terminate a session; restart without a token."""
    auth_dir, agent_dir = tmp_path / "auth", tmp_path / "agent"
    port, join_port = free_port(), free_port()
    admin_socket, agent_socket = socket_dir / "admin.sock", socket_dir / "agent.sock"
    auth_config = write_yaml(
        tmp_path / "auth.yaml",
        {
            "cluster_name": "e2e.sec.lockd",
            "data_dir": str(auth_dir),
            "log": {"format": "json", "level": "info"},
            "auth_service": {
                "enabled": True,
                "listen_addr": f"127.0.0.1:{port}",
                "join_listen_addr": f"127.0.0.1:{join_port}",
                "admin_socket": str(admin_socket),
                "metrics_addr": "",
                "heartbeat_interval": "1s",
            },
        },
    )
    auth = processes.spawn("auth", "--config", str(auth_config))
    await processes.serving(auth, admin_socket)
    assert stat.S_IMODE((auth_dir / "ca.key").stat().st_mode) == 0o600

    admin = AuthClient.connect(f"unix:{admin_socket}")
    try:
        pin = (await admin.status()).ca_pin
        token, _ = await admin.create_agent_token(timedelta(minutes=10))
        agent_settings: dict[str, object] = {
            "enabled": True,
            "auth_servers": [f"127.0.0.1:{port}"],
            "join_servers": [f"127.0.0.1:{join_port}"],
            "join_token": token,
            "ca_pin": pin,
            "socket": str(agent_socket),
            "metrics_addr": "",
        }
        agent_yaml = tmp_path / "agent.yaml"
        agent_data: dict[str, object] = {
            "cluster_name": "e2e.sec.lockd",
            "data_dir": str(agent_dir),
            "log": {"format": "json", "level": "info"},
            "agent_service": agent_settings,
        }
        agent = processes.spawn("agent", "--config", str(write_yaml(agent_yaml, agent_data)))
        await processes.serving(agent, agent_socket)
        server_id = (agent_dir / "server_id").read_text().strip()
        assert stat.S_IMODE((agent_dir / "agent.key").stat().st_mode) == 0o600
        stored_cert = (agent_dir / "agent.crt").read_bytes()

        await eventually(lambda: _synced(agent_socket), what="the agent to sync")
        await eventually(
            lambda: _reported_synced(admin, server_id), what="the auth server to see it synced"
        )

        async with (
            AgentClient.connect(agent_socket) as sidecar,
            sidecar.open_session(Identity(user="mallory", login="root")) as session,
        ):
            await admin.create_lock(Lock("m1", LockTarget(user="mallory"), "stolen laptop"))
            termination = await asyncio.wait_for(session.terminated(), WAIT)
        assert termination.reason == 'lock targeting User:"mallory" is in force: stolen laptop'
        assert termination.lock_name == "m1"

        assert await processes.stop(agent) == 0, processes.output(agent)
        agent_settings.pop("join_token")
        agent_settings.pop("ca_pin")
        agent = processes.spawn("agent", "--config", str(write_yaml(agent_yaml, agent_data)))
        await processes.serving(agent, agent_socket)
        assert (agent_dir / "agent.crt").read_bytes() == stored_cert
        await eventually(
            lambda: _reported_synced(admin, server_id), what="the restarted agent to sync"
        )
        async with AgentClient.connect(agent_socket) as sidecar:
            with pytest.raises(SessionDenied, match="stolen laptop"):
                async with sidecar.open_session(Identity(user="mallory")):
                    pass
        assert await processes.stop(agent) == 0, processes.output(agent)
    finally:
        await admin.close()
    assert await processes.stop(auth) == 0, processes.output(auth)


async def _synced(agent_socket: Path) -> bool:
    return await agent_state(agent_socket) == "synced"


async def _reported_synced(admin: AuthClient, server_id: str) -> bool:
    status = await admin.status()
    return any(
        agent.server_id == server_id and agent.connected and agent.state == "synced"
        for agent in status.agents
    )

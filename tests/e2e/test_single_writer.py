"""End to end: one writer per embedded store, no shared ports, no stolen sockets (issue 11).

Real `lockd auth` and `lockd agent` processes on loopback and SQLite: a second auth
server on one data dir, a second agent on one data dir, a second server whose admin
socket or port is taken — each refused at once with exit code 1 and a message that says
why, and the running one keeps serving on its socket.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.runtime.unix_socket import answers
from tests.support import free_port

pytestmark = pytest.mark.slow

LOCKD = Path(sys.executable).with_name("lockd")
START_TIMEOUT = 30.0
EXIT_TIMEOUT = 30.0


class Processes:
    """Starts lockd processes from configs written in a temp dir; kills them at the end."""

    def __init__(self, directory: Path, sockets: Path) -> None:
        self.directory = directory
        self.sockets = sockets
        self.running: list[subprocess.Popen[bytes]] = []
        self.count = 0

    def auth_config(
        self, name: str, data_dir: Path, admin_socket: Path, port: int, metrics: str = ""
    ) -> Path:
        path = self.directory / f"{name}.yaml"
        path.write_text(
            f"""\
cluster_name: single.lockd
data_dir: {data_dir}
log: {{format: json}}
auth_service:
  enabled: true
  insecure: true
  listen_addr: 127.0.0.1:{port}
  admin_socket: {admin_socket}
  metrics_addr: "{metrics}"
""",
            encoding="utf-8",
        )
        return path

    def agent_config(self, name: str, data_dir: Path, socket: Path) -> Path:
        path = self.directory / f"{name}.yaml"
        path.write_text(
            f"""\
cluster_name: single.lockd
data_dir: {data_dir}
log: {{format: json}}
agent_service:
  enabled: true
  insecure: true
  server_id: node-1
  auth_servers: ["127.0.0.1:{free_port()}"]
  socket: {socket}
  metrics_addr: ""
""",
            encoding="utf-8",
        )
        return path

    def spawn(self, command: str, config: Path) -> tuple[subprocess.Popen[bytes], Path]:
        self.count += 1
        stderr = self.directory / f"stderr-{self.count}.log"
        with stderr.open("wb") as err:
            process = subprocess.Popen(
                [str(LOCKD), command, "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.running.append(process)
        return process, stderr

    def kill_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


@pytest.fixture
def processes(tmp_path: Path, socket_dir: Path) -> Iterator[Processes]:
    manager = Processes(tmp_path, socket_dir)
    try:
        yield manager
    finally:
        manager.kill_all()


async def serving(socket: Path) -> bool:
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        except grpc.aio.AioRpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


async def until_serving(process: subprocess.Popen[bytes], socket: Path, stderr: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not await serving(socket):
        assert process.poll() is None, f"exited {process.returncode}: {text(stderr)}"
        assert time.monotonic() < deadline, f"did not start: {text(stderr)}"
        await asyncio.sleep(0.1)


def text(path: Path) -> str:
    return path.read_text(errors="replace")


async def exit_code(process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + EXIT_TIMEOUT
    while (code := process.poll()) is None:
        assert time.monotonic() < deadline, f"process {process.pid} still running"
        await asyncio.sleep(0.05)
    return code


async def test_a_second_auth_server_on_one_store_is_refused_naming_the_first(
    processes: Processes,
) -> None:
    """A second `lockd auth` on the same config (same SQLite store) exits 1 at once with
    an error naming the running server's pid; the first keeps serving."""
    admin = processes.sockets / "admin.sock"
    config = processes.auth_config("auth", processes.directory / "data", admin, free_port())
    first, first_err = processes.spawn("auth", config)
    await until_serving(first, admin, first_err)

    second, second_err = processes.spawn("auth", config)
    assert await exit_code(second) == 1
    message = second_err.read_text()
    assert f"another lockd auth server (pid {first.pid}) is already running" in message
    assert "Traceback" not in message
    assert first.poll() is None
    assert await serving(admin)


async def test_a_live_admin_socket_survives_a_failed_second_start(processes: Processes) -> None:
    """A second server with its own data dir but the first one's admin socket and metrics
    port is refused (the socket answers) and leaves the first one's socket in place."""
    admin = processes.sockets / "admin.sock"
    metrics = f"127.0.0.1:{free_port()}"
    first_config = processes.auth_config(
        "first", processes.directory / "one", admin, free_port(), metrics
    )
    first, first_err = processes.spawn("auth", first_config)
    await until_serving(first, admin, first_err)
    inode = admin.stat().st_ino

    second_config = processes.auth_config(
        "second", processes.directory / "two", admin, free_port(), metrics
    )
    second, second_err = processes.spawn("auth", second_config)
    assert await exit_code(second) == 1
    message = second_err.read_text()
    assert f"{admin} is in use" in message
    assert "Traceback" not in message
    assert admin.stat().st_ino == inode
    assert await serving(admin)


async def test_a_taken_port_is_an_error_not_a_shared_port(processes: Processes) -> None:
    """A second server on the first one's gRPC port fails to bind (no SO_REUSEPORT) and
    says which address is taken; it removes its own admin socket, not the first's."""
    port = free_port()
    first_admin = processes.sockets / "first.sock"
    first, first_err = processes.spawn(
        "auth", processes.auth_config("first", processes.directory / "one", first_admin, port)
    )
    await until_serving(first, first_admin, first_err)

    second_admin = processes.sockets / "second.sock"
    second, second_err = processes.spawn(
        "auth", processes.auth_config("second", processes.directory / "two", second_admin, port)
    )
    assert await exit_code(second) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second_err.read_text()
    assert not second_admin.exists()
    assert await serving(first_admin)


async def test_a_stale_admin_socket_is_replaced(processes: Processes) -> None:
    """A socket file left by a server that died (nothing answers on it) does not stop
    the next start."""
    admin = processes.sockets / "admin.sock"
    config = processes.auth_config("auth", processes.directory / "data", admin, free_port())
    first, first_err = processes.spawn("auth", config)
    await until_serving(first, admin, first_err)
    first.kill()
    first.wait(timeout=30)
    assert admin.exists()
    assert not await serving(admin)

    again, again_err = processes.spawn("auth", config)
    await until_serving(again, admin, again_err)


async def test_a_second_agent_on_one_data_dir_is_refused(processes: Processes) -> None:
    """Two agents with one data dir (one server_id) must not both run: the second exits
    1 naming the first one's pid."""
    data = processes.directory / "agent-data"
    first, first_err = processes.spawn(
        "agent", processes.agent_config("one", data, processes.sockets / "one.sock")
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not await asyncio.to_thread(answers, processes.sockets / "one.sock"):
        assert first.poll() is None, first_err.read_text()
        assert time.monotonic() < deadline, first_err.read_text()
        await asyncio.sleep(0.1)

    second, second_err = processes.spawn(
        "agent", processes.agent_config("two", data, processes.sockets / "two.sock")
    )
    assert await exit_code(second) == 1
    assert f"another lockd agent (pid {first.pid}) is already running" in second_err.read_text()
    assert first.poll() is None


async def test_a_live_agent_socket_survives_a_second_agent_on_it(processes: Processes) -> None:
    """A second agent with its own data dir but the first one's socket is refused and
    leaves the first one's socket file in place."""
    socket = processes.sockets / "agent.sock"
    first, first_err = processes.spawn(
        "agent", processes.agent_config("one", processes.directory / "one", socket)
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not await asyncio.to_thread(answers, socket):
        assert first.poll() is None, text(first_err)
        assert time.monotonic() < deadline, text(first_err)
        await asyncio.sleep(0.1)
    inode = socket.stat().st_ino

    second, second_err = processes.spawn(
        "agent", processes.agent_config("two", processes.directory / "two", socket)
    )
    assert await exit_code(second) == 1
    assert f"{socket} is in use" in text(second_err)
    assert socket.stat().st_ino == inode
    assert await asyncio.to_thread(answers, socket)

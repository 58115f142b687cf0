"""End to end: the real `lockd auth` daemon in a subprocess, on loopback and SQLite.

Each test writes a YAML config into its own directories, starts `lockd auth --config`,
waits for the admin socket to answer health SERVING, and talks gRPC to it. Whatever a
test leaves running is killed (SIGKILL) at teardown.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.domain.presets import PRESET_ROLES
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from lockd.v1.watch_service_pb2_grpc import WatchServiceStub
from tests.support import free_port

pytestmark = pytest.mark.slow

LOCKD = Path(sys.executable).with_name("lockd")
START_TIMEOUT = 30.0  # a cold start imports grpc and opens SQLite: slow on a loaded CI box
WAIT = 15.0


@dataclass
class Daemon:
    """One `lockd auth` process."""

    process: subprocess.Popen[bytes]
    admin_socket: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def exited(self) -> int | None:
        return self.process.poll()


class Daemons:
    """Starts daemons from one config (same data dir, so a second start is a restart)."""

    def __init__(self, directory: Path, sockets: Path) -> None:
        self.directory = directory
        self.config = directory / "lockd.yaml"
        self.admin_socket = sockets / "admin.sock"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.starts = 0
        port = free_port()
        self.config.write_text(
            f"""\
cluster_name: e2e.lockd
data_dir: {directory / "data"}
log:
  format: json
  level: info
auth_service:
  enabled: true
  insecure: true
  listen_addr: 127.0.0.1:{port}
  admin_socket: {self.admin_socket}
  metrics_addr: ""
  heartbeat_interval: 1s
""",
            encoding="utf-8",
        )

    def spawn(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.starts += 1
        stdout = self.directory / f"stdout-{self.starts}.log"
        stderr = self.directory / f"stderr-{self.starts}.log"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [str(LOCKD), *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL
            )
        self.processes.append(process)
        return process, stderr

    async def start(self) -> Daemon:
        process, stderr = self.spawn("auth", "--config", str(self.config))
        daemon = Daemon(process, self.admin_socket, stderr)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = daemon.exited()
            assert code is None, f"lockd exited with {code}: {daemon.stderr()}"
            if self.admin_socket.exists() and await _serving(self.admin_socket):
                return daemon
            assert time.monotonic() < deadline, f"lockd did not start: {daemon.stderr()}"
            await asyncio.sleep(0.1)

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)


async def _serving(admin_socket: Path) -> bool:
    async with grpc.aio.insecure_channel(f"unix:{admin_socket}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.aio.AioRpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


async def _exit_code(process: subprocess.Popen[bytes], within: float) -> int:
    """The exit code, polled (the event loop keeps serving gRPC meanwhile)."""
    deadline = time.monotonic() + within
    while (code := process.poll()) is None:
        assert time.monotonic() < deadline, f"process {process.pid} still running"
        await asyncio.sleep(0.05)
    return code


@pytest.fixture
def daemons(tmp_path: Path, socket_dir: Path) -> Iterator[Daemons]:
    manager = Daemons(tmp_path, socket_dir)
    try:
        yield manager
    finally:
        manager.kill_all()


async def _status(channel: grpc.aio.Channel) -> cluster_pb.GetClusterStatusResponse:
    return await ClusterServiceStub(channel).GetClusterStatus(
        cluster_pb.GetClusterStatusRequest(), timeout=WAIT
    )


async def test_an_acknowledged_lock_survives_sigkill(daemons: Daemons) -> None:
    """CreateLock acknowledged, then SIGKILL at once: after a restart the lock is there with
    the same revision and epoch."""
    first = await daemons.start()
    async with grpc.aio.insecure_channel(f"unix:{daemons.admin_socket}") as channel:
        stub = LockServiceStub(channel)
        for index in range(3):
            await stub.CreateLock(
                lock_pb.CreateLockRequest(
                    lock=res_pb.Lock(name=f"warmup-{index}", target=res_pb.LockTarget(role="x"))
                ),
                timeout=WAIT,
            )
        epoch = (await _status(channel)).epoch
        lock = res_pb.Lock(
            name="durable", target=res_pb.LockTarget(user="mallory"), message="compromised"
        )
        response = await stub.CreateLock(lock_pb.CreateLockRequest(lock=lock), timeout=WAIT)
        os.kill(first.process.pid, signal.SIGKILL)
    assert await _exit_code(first.process, WAIT) == -signal.SIGKILL

    await daemons.start()
    async with grpc.aio.insecure_channel(f"unix:{daemons.admin_socket}") as channel:
        stored = await LockServiceStub(channel).GetLock(
            lock_pb.GetLockRequest(name="durable"), timeout=WAIT
        )
        status = await _status(channel)
    assert stored.lock == response.lock
    assert (status.epoch, status.revision) == (epoch, response.revision)
    assert response.revision == len(PRESET_ROLES) + 4  # the preset roles come first


async def test_sigterm_resets_watch_streams_and_exits_zero(daemons: Daemons) -> None:
    """SIGTERM: an open WatchLocks stream receives Reset(SHUTDOWN) and ends, and the
    process exits 0 within a few seconds."""
    daemon = await daemons.start()
    async with grpc.aio.insecure_channel(f"unix:{daemons.admin_socket}") as channel:
        call: grpc.aio.StreamStreamCall[watch_pb.WatchLocksRequest, watch_pb.WatchLocksResponse]
        call = WatchServiceStub(channel).WatchLocks()
        hello = watch_pb.WatchHello(agent_id="e2e-agent")
        await call.write(watch_pb.WatchLocksRequest(hello=hello))
        kinds: list[str | None] = []
        async with asyncio.timeout(WAIT):
            while not kinds or kinds[-1] != "snapshot_end":
                kinds.append(_kind(await call.read()))
        assert kinds[0] == "snapshot_begin"

        daemon.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            while True:
                response = await call.read()
                assert isinstance(response, watch_pb.WatchLocksResponse), "ended without a Reset"
                if response.WhichOneof("message") == "reset":
                    break
                assert response.WhichOneof("message") == "heartbeat"
            assert response.reset.reason == watch_pb.RESET_REASON_SHUTDOWN
            assert await call.read() is grpc.aio.EOF
    assert await _exit_code(daemon.process, 10) == 0, daemon.stderr()
    assert not daemons.admin_socket.exists()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("auth_service:\n  enabled: true\n  listen_adr: 127.0.0.1:3025\n", "listen_adr"),
        ("auth_service:\n  enabled: true\n  heartbeat_interval: 5\n", "heartbeat_interval"),
        ("auth_service: [oops\n", "invalid YAML"),
        ("auth_service:\n  enabled: false\nagent_service:\n  enabled: false\n", "nothing to run"),
        (None, "config file not found"),
    ],
    ids=["unknown key", "duration without unit", "broken yaml", "nothing enabled", "no file"],
)
async def test_a_bad_config_exits_2_with_an_error_on_stderr(
    daemons: Daemons, tmp_path: Path, config: str | None, expected: str
) -> None:
    """Configuration errors: exit code 2 and one `ERROR: ...` message on stderr."""
    path = tmp_path / "bad.yaml"
    if config is not None:
        path.write_text(f"data_dir: {tmp_path / 'data'}\n{config}", encoding="utf-8")
    process, stderr = daemons.spawn("auth", "--config", str(path))
    assert await _exit_code(process, START_TIMEOUT) == 2
    text = stderr.read_text()
    assert text.startswith("ERROR: "), text
    assert expected in text


async def test_auth_refuses_a_config_without_the_auth_service(
    daemons: Daemons, tmp_path: Path
) -> None:
    """`lockd auth` with only an agent configured: exit 2, ERROR naming auth_service."""
    path = tmp_path / "agent-only.yaml"
    path.write_text(
        f"data_dir: {tmp_path / 'data'}\nagent_service:\n  enabled: true\n",
        encoding="utf-8",
    )
    process, stderr = daemons.spawn("auth", "--config", str(path))
    assert await _exit_code(process, START_TIMEOUT) == 2
    text = stderr.read_text()
    assert text.startswith("ERROR: "), text
    assert "auth_service" in text


async def test_auth_creates_a_missing_data_dir(daemons: Daemons, tmp_path: Path) -> None:
    """A fresh machine: data_dir does not exist yet and audit goes to stdout; the daemon
    creates data_dir and starts."""
    text = daemons.config.read_text(encoding="utf-8")
    fresh = tmp_path / "fresh" / "data"
    daemons.config.write_text(
        text.replace(f"data_dir: {tmp_path / 'data'}", f"data_dir: {fresh}")
        + "audit:\n  sink: stdout\n",
        encoding="utf-8",
    )
    await daemons.start()
    assert (fresh / "lockd.db").exists()


def _kind(response: object) -> str | None:
    """Which message a WatchLocks response carries (None for the end of the stream)."""
    if not isinstance(response, watch_pb.WatchLocksResponse):
        return None
    return response.WhichOneof("message")

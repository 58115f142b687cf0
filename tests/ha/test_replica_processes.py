"""Real `lockd auth` replica processes on one PostgreSQL: SIGKILL one, resume on the other.

Two daemons share the test's database (plaintext on loopback); a real agent (`AgentApp`)
listing both follows the first, and after the first is killed with SIGKILL resumes on
the second from its revision — events only, no snapshot — and the survivor takes the
reaper's lease and expires locks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.agent.helpers import Cluster
from tests.api.helpers import create_lock, lock_pb_of, open_channel
from tests.ha.test_replicas import soon
from tests.postgres_server import PostgresDatabase
from tests.support import free_port

pytestmark = pytest.mark.slow

LOCKD = Path(sys.executable).with_name("lockd")
START_TIMEOUT = 40.0


class Replica:
    def __init__(self, directory: Path, name: str, dsn: str) -> None:
        self.port = free_port()
        self.stderr = directory / f"{name}.stderr"
        config = directory / f"{name}.yaml"
        config.write_text(
            f"""\
cluster_name: ha.test
data_dir: {directory / name}
log: {{format: json}}
auth_service:
  enabled: true
  insecure: true
  listen_addr: 127.0.0.1:{self.port}
  admin_socket: {directory / name / "admin.sock"}
  metrics_addr: ""
  heartbeat_interval: 500ms
  storage:
    type: postgres
    dsn: "{dsn}"
    sslmode: disable
""",
            encoding="utf-8",
        )
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [str(LOCKD), "auth", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@pytest.fixture
def spawned() -> Iterator[list[Replica]]:
    replicas: list[Replica] = []
    yield replicas
    for replica in replicas:
        if replica.process.poll() is None:
            replica.process.kill()
        replica.process.wait(timeout=30)


async def until_serving(replica: Replica, channel: grpc.aio.Channel) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    stub = health_pb2_grpc.HealthStub(channel)
    while True:
        assert replica.process.poll() is None, await asyncio.to_thread(replica.log)
        try:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        assert time.monotonic() < deadline, await asyncio.to_thread(replica.log)
        await asyncio.sleep(0.2)


async def test_an_agent_resumes_on_the_survivor_after_sigkill_without_a_snapshot(
    spawned: list[Replica], nodes: Cluster, postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    """SIGKILL the replica an agent follows: the agent resumes on the other replica from
    its revision without a snapshot, gets a lock created there, and the survivor expires
    it (reaper takeover)."""
    first = Replica(tmp_path, "a", postgres_db.dsn)
    spawned.append(first)
    channel_a = open_channel(first.address)
    await until_serving(first, channel_a)
    second = Replica(tmp_path, "b", postgres_db.dsn)
    spawned.append(second)
    channel_b = open_channel(second.address)
    await until_serving(second, channel_b)
    try:
        agent = await nodes.start_agent(addresses=(first.address, second.address))
        for index in range(3):
            last = await create_lock(channel_a, lock_pb_of(f"before-{index}", user=f"u{index}"))
        await agent.wait_revision(last)
        os.kill(first.process.pid, signal.SIGKILL)
        await asyncio.to_thread(first.process.wait, 30)

        brief = await create_lock(channel_b, lock_pb_of("brief", user="x", expires=soon(2)))
        await agent.wait_revision(brief)
        assert "brief" in agent.app.runtime.view.state.locks
        await agent.wait_revision(brief + 1, within=30)  # the EXPIRE, from the survivor
        assert "brief" not in agent.app.runtime.view.state.locks
        for reason in ("epoch_changed", "too_old", "gap"):
            assert agent.metric("lockd_agent_resyncs_total", reason=reason) == 0
    finally:
        await channel_a.close()
        await channel_b.close()

"""Fan-out from several processes: an auth server with `watch_workers=2` (itself plus one
real worker process sharing its port) over a real SQLite file and loopback gRPC.

Agents whose connections the kernel gave to different processes receive the same
revisions in order, acks on demand reach the auth server from both, calls landing on the
worker are forwarded as the caller of the TLS certificate, and a worker killed with
SIGKILL is noticed and replaced while its agents resume elsewhere without a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client import Counter, Gauge

from lockd.domain.errors import UnavailableError
from lockd.obs.audit import AuditEvent
from lockd.obs.loop_metrics import LoopCounter
from lockd.runtime.auth_app import AuthApp, AuthServerSettings, TlsSettings
from lockd.runtime.call_forwarder import FORWARDED_CERT
from lockd.store import SqliteStore
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from tests.api.conftest import Running, Servers
from tests.api.helpers import (
    Follower,
    StreamEnded,
    WatchClient,
    cluster_status,
    create_lock,
    delete_lock,
    lock_pb_of,
    start_following,
)
from tests.security.helpers import CLUSTER_NAME, SecureCluster, UserIdentity
from tests.support import eventually, free_port

# Enough connections that both processes get some: each new one lands on the worker
# with probability 1/2, so 64 leave one process without any with odds of 2^-63.
MAX_CONNECTIONS = 64


@dataclass
class Spread:
    """Following agents on connections of their own, by the process serving each."""

    on_server: Follower
    on_worker: Follower
    worker_channel: grpc.aio.Channel  # a connection the worker serves

    def both(self) -> tuple[Follower, Follower]:
        return self.on_server, self.on_worker


async def spread_agents(server: Running) -> Spread:
    """One following agent served by the auth server and one by worker 1."""
    workers = server.app.workers
    assert workers is not None
    found: dict[int | None, tuple[Follower, grpc.aio.Channel]] = {}
    for index in range(MAX_CONNECTIONS):
        channel = server.channel()
        client = await WatchClient.open(channel, agent_id=f"agent-{index}")
        follower = await start_following(client)
        serving = workers.serving(client.agent_id)
        if serving in found:
            client.cancel()
            continue
        found[serving] = (follower, channel)
        if len(found) == 2:
            return Spread(found[None][0], found[1][0], found[1][1])
    raise AssertionError(f"{MAX_CONNECTIONS} connections all went to one process")


async def test_agents_on_the_server_and_on_a_worker_get_every_revision_in_order(
    servers: Servers,
) -> None:
    """Streams served by the auth server and by its worker receive the same events,
    gapless and in order; writes on a connection the worker serves are forwarded; a
    revision somebody awaits is asked for and acknowledged on both, and both acks show
    in the cluster status."""
    server = await servers.start(watch_workers=2)
    spread = await spread_agents(server)
    writes = spread.worker_channel
    for index in range(6):
        await create_lock(writes, lock_pb_of(f"lock-{index}", user=f"user-{index}"))
        if index % 3 == 2:
            await delete_lock(writes, f"lock-{index - 1}")
    final = (await cluster_status(writes)).revision
    assert final == 8
    seen = [await follower.until(final) for follower in spread.both()]
    assert [(e.revision, e.type, e.name) for e in seen[0]] == [
        (e.revision, e.type, e.name) for e in seen[1]
    ]
    assert [e.revision for e in seen[0]] == list(range(1, final + 1))

    status = await ClusterServiceStub(writes).GetClusterStatus(
        cluster_pb.GetClusterStatusRequest(await_revision=final)
    )
    assert status.revision == final
    for follower in spread.both():
        request = await follower.client.read_kind("ack_request")
        assert request.ack_request.revision == final
        await follower.client.ack(follower.epoch, final)

    async def both_acked() -> bool:
        agents = {a.server_id: a for a in (await cluster_status(writes)).agents}
        return all(agents[f.client.agent_id].applied_revision == final for f in spread.both())

    await eventually(both_acked, what="both agents' acks at the auth server")

    # The worker's fan-out is in the auth server's metrics: both open streams, and the
    # events sent to both (8 revisions each).
    metrics = server.app.metrics

    def counted() -> bool:
        return sample(metrics.watch_streams) == 2 and sample(metrics.events_sent_total) >= 16

    await eventually(counted, what="the worker's streams and events in the server's metrics")


async def test_a_killed_worker_is_noticed_replaced_and_its_agent_resumes_elsewhere(
    servers: Servers,
) -> None:
    """SIGKILL on the worker: its agent's stream fails and shows disconnected at the auth
    server, a new worker starts, and the agent resumes from its revision (events only,
    no snapshot) on whichever process takes its new connection."""
    server = await servers.start(watch_workers=2)
    workers = server.app.workers
    assert workers is not None
    spread = await spread_agents(server)
    victim = spread.on_worker
    (pid,) = workers.pids
    os.kill(pid, signal.SIGKILL)

    async def drain() -> None:
        while True:
            await victim.next_batch()

    with pytest.raises((StreamEnded, grpc.aio.AioRpcError)):
        await drain()

    async def noticed() -> bool:
        try:
            status = await cluster_status(server.channel())
        except grpc.aio.AioRpcError as error:
            # A connection the kernel queued on the dying worker's socket is reset.
            if error.code() is grpc.StatusCode.UNAVAILABLE:
                return False
            raise
        agents = {a.server_id: a for a in status.agents}
        return workers.deaths == 1 and not agents[victim.client.agent_id].connected

    await eventually(noticed, what="the auth server to notice the dead worker")
    await eventually(lambda: _replaced(workers.pids, pid), what="a new worker")

    writes = server.channel()
    later = await create_lock(writes, lock_pb_of("after-the-death"))
    resumed = await WatchClient.open(
        server.channel(),
        agent_id=victim.client.agent_id,
        epoch=victim.epoch,
        applied_revision=victim.revision,
    )
    events = await Follower(resumed, victim.epoch, victim.revision).until(later)
    assert [e.name for e in events] == ["after-the-death"]
    assert all(r.WhichOneof("message") != "snapshot_begin" for r in resumed.received)
    assert [e.name for e in await spread.on_server.until(later)] == ["after-the-death"]


def sample(metric: Gauge | Counter | LoopCounter) -> float:
    """The value of an unlabelled gauge or counter."""
    (family,) = metric.collect()
    return next(s.value for s in family.samples if not s.name.endswith("_created"))


async def _replaced(pids: list[int], dead: int) -> bool:
    return len(pids) == 1 and dead not in pids


class WorkerCluster(SecureCluster):
    """A TLS auth server on SQLite with one watch worker."""

    async def start(self) -> AuthApp:
        settings = AuthServerSettings(
            cluster_name=CLUSTER_NAME,
            listen_addr="127.0.0.1:0",
            admin_socket=self.admin_socket,
            shutdown_grace=1.0,
            tls=TlsSettings(ca_dir=self.ca_dir, join_listen_addr="127.0.0.1:0"),
            watch_workers=2,
        )
        self.app = await AuthApp.start(settings, self._store_factory(), self.clock, self.audit)
        return self.app


async def worker_connection(cluster: SecureCluster, user: UserIdentity) -> grpc.aio.Channel:
    """A channel of `user` whose connection the worker serves (its watch stream says)."""
    workers = cluster.running.workers
    assert workers is not None
    for index in range(MAX_CONNECTIONS):
        channel = cluster.channel(user.credentials(), f"localhost:{cluster.running.port}")
        watch = await WatchClient.open(channel, agent_id=f"{user.name}-{index}")
        await watch.read_kind("snapshot_begin")
        if workers.serving(watch.agent_id) == 1:
            return channel
        watch.cancel()
    raise AssertionError(f"{MAX_CONNECTIONS} connections, none on the worker")


async def test_calls_on_a_worker_connection_are_forwarded_as_the_certificates_user(
    tmp_path: Path, socket_dir: Path
) -> None:
    """Over mTLS, calls arriving at the worker reach the auth server as the user of the
    client certificate: the locksmith creates, the auditor is refused even when it sends
    the locksmith's certificate as forwarding metadata; a worker's own refusal of a
    locked user's stream is in the auth server's audit trail with the caller's address."""
    cluster = WorkerCluster(tmp_path, socket_dir, lambda: SqliteStore(tmp_path / "lockd.db"))
    await cluster.start()
    try:
        await cluster.seed_roles()
        locksmith = await cluster.user("smith", ("locksmith",))
        auditor = await cluster.user("ada", ("auditor",))
        smith_channel = await worker_connection(cluster, locksmith)
        ada_channel = await worker_connection(cluster, auditor)
        forged = ((FORWARDED_CERT, locksmith.cert_pem),)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await LockServiceStub(ada_channel).CreateLock(
                lock_pb.CreateLockRequest(lock=lock_pb_of("by-ada", user="eve")), metadata=forged
            )
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED

        created = await LockServiceStub(smith_channel).CreateLock(
            lock_pb.CreateLockRequest(lock=lock_pb_of("on-ada", user="ada"))
        )
        assert created.lock.created_by == "smith"
        before = len(cluster.audit.of("access.denied"))

        async def watch_refused() -> bool:
            watch = await WatchClient.open(ada_channel, agent_id="ada-again")
            try:
                await watch.read()
            except grpc.aio.AioRpcError as error:
                return error.code() is grpc.StatusCode.PERMISSION_DENIED
            watch.cancel()
            return False  # the worker has not applied the lock yet

        await eventually(watch_refused, what="the worker to refuse the locked user's stream")

        async def audited() -> list[AuditEvent]:
            return cluster.audit.of("access.denied")[before:]

        denied = (await eventually(audited, what="the worker's refusal in the audit trail"))[-1]
        assert denied.fields["user"] == "ada"
        assert str(denied.fields["source"]).startswith("ipv")
    finally:
        await cluster.stop()


async def test_a_port_held_by_a_server_with_workers_is_refused_to_others_not_to_its_restart(
    servers: Servers,
) -> None:
    """The shared port stays this server's: another server on it, with workers or
    without, fails to start with the taken-port message instead of sharing it; once it
    stopped, it starts again on that port at once (its old connections in TIME_WAIT do
    not count as the port being taken)."""
    port = free_port()
    first = await servers.start(watch_workers=2, listen_addr=f"127.0.0.1:{port}")
    await create_lock(first.channel(), lock_pb_of("before-the-restart"))
    for workers in (2, 1):
        with pytest.raises(UnavailableError, match="in use"):
            await servers.start(
                db=servers.db_path(f"other-{workers}"),
                watch_workers=workers,
                listen_addr=f"127.0.0.1:{port}",
            )
    # A connection the server closes first leaves the server's side in TIME_WAIT.
    _, client = await asyncio.open_connection("127.0.0.1", port)
    await first.close_channels()
    await first.stop()
    client.close()
    with contextlib.suppress(ConnectionResetError):  # the stopping server may reset it
        await client.wait_closed()
    again = await servers.start(watch_workers=2, listen_addr=f"127.0.0.1:{port}")
    assert (await cluster_status(again.channel())).revision == 1


async def test_an_agent_locked_on_a_worker_is_shown_locked_with_its_last_ack(
    servers: Servers,
) -> None:
    """A lock on the server_id of an agent served by the worker: the batch carrying it,
    then Reset(LOCKED); the agent's last ack (the lock applied) still reaches the auth
    server, which shows it locked at that revision, as `lock --wait` needs."""
    server = await servers.start(watch_workers=2)
    victim = (await spread_agents(server)).on_worker
    agent_id = victim.client.agent_id
    revision = await create_lock(server.channel(), lock_pb_of("cut-off", server_id=agent_id))
    assert [e.name for e in await victim.until(revision)] == ["cut-off"]
    reset = await victim.client.read_kind("reset")
    assert reset.reset.reason == watch_pb.RESET_REASON_LOCKED
    await victim.client.ack(victim.epoch, revision)

    async def shown_locked() -> bool:
        agent = {a.server_id: a for a in (await cluster_status(server.channel())).agents}[agent_id]
        return agent.state == cluster_pb.AGENT_SYNC_STATE_LOCKED and (
            agent.applied_revision == revision
        )

    await eventually(shown_locked, what="the locked agent's last ack at the auth server")

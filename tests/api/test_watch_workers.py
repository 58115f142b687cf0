"""Fan-out from several processes: an auth server with `watch_workers=2` (itself plus one
real worker process sharing its port) over a real SQLite file and loopback gRPC.

Agents whose connections the kernel gave to different processes receive the same
revisions in order, acks on demand reach the auth server from both, calls landing on the
worker are forwarded, and a worker killed with SIGKILL is noticed and replaced while its
agents resume elsewhere without a snapshot.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import grpc
import pytest

from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
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
from tests.support import eventually

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
        agents = {a.server_id: a for a in (await cluster_status(server.channel())).agents}
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


async def _replaced(pids: list[int], dead: int) -> bool:
    return len(pids) == 1 and dead not in pids

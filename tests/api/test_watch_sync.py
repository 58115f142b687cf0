"""WatchLocks over real gRPC: snapshot, resume, heartbeats, acks and the Hello rules."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import grpc
import pytest

from lockd.auth.watch_stream import SNAPSHOT_CHUNK, WatchSettings
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from lockd.v1.watch_service_pb2_grpc import WatchServiceStub
from tests.api.conftest import Servers
from tests.api.helpers import (
    Follower,
    WatchClient,
    cluster_status,
    create_lock,
    delete_lock,
    lock_pb_of,
    now,
    read_snapshot,
)
from tests.support import eventually


async def test_a_fresh_stream_gets_a_snapshot_then_the_events_after_it(servers: Servers) -> None:
    """Hello without an epoch: Begin/Chunks/End at the current revision (the cluster auth
    preference always included), then every later change as contiguous batches."""
    server = await servers.start()
    channel = server.channel()
    for index in range(SNAPSHOT_CHUNK + 20):  # enough for two chunks
        await create_lock(channel, lock_pb_of(f"lock-{index:04}"))
    status = await cluster_status(channel)

    client = await WatchClient.open(channel)
    snapshot = await read_snapshot(client)
    assert snapshot.begin.epoch == status.epoch
    assert snapshot.begin.revision == status.revision == SNAPSHOT_CHUNK + 20
    assert snapshot.begin.count == SNAPSHOT_CHUNK + 21  # the locks and the preference
    assert snapshot.chunks == 2
    assert snapshot.kinds()[0] == "cluster_auth_preference"
    assert len(snapshot.lock_names()) == SNAPSHOT_CHUNK + 20
    assert not snapshot.packed  # not asked for: every lock a Resource

    follower = Follower(client, snapshot.begin.epoch, snapshot.begin.revision)
    put = await create_lock(channel, lock_pb_of("after", user="bob"))
    deleted = await delete_lock(channel, "lock-0000")
    events = await follower.until(deleted)
    assert [(e.revision, e.type, e.name) for e in events] == [
        (put, watch_pb.EVENT_TYPE_PUT, "after"),
        (deleted, watch_pb.EVENT_TYPE_DELETE, "lock-0000"),
    ]
    assert events[0].resource.lock.target.user == "bob"
    assert not events[1].HasField("resource")
    client.cancel()


async def test_an_empty_store_still_snapshots_the_default_preference(servers: Servers) -> None:
    """Revision 0: the snapshot holds exactly the cluster auth preference."""
    server = await servers.start()
    client = await WatchClient.open(server.channel())
    snapshot = await read_snapshot(client)
    assert (snapshot.begin.revision, snapshot.begin.count) == (0, 1)
    assert snapshot.kinds() == ["cluster_auth_preference"]
    client.cancel()


async def test_resume_from_a_revision_in_the_ring_sends_only_the_missed_events(
    servers: Servers,
) -> None:
    """Same epoch, revision still in the ring: no snapshot, the events after it."""
    server = await servers.start()
    channel = server.channel()
    revisions = [await create_lock(channel, lock_pb_of(f"l{i}")) for i in range(4)]
    epoch = (await cluster_status(channel)).epoch

    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revisions[1])
    first = await client.read_kind("events")
    assert first.events.from_revision == revisions[2]
    follower = Follower(client, epoch, revisions[1])
    follower.apply(first.events)
    await follower.until(revisions[3])
    assert [e.name for e in follower.events] == ["l2", "l3"]
    later = await create_lock(channel, lock_pb_of("l4"))
    assert [e.name for e in await follower.until(later)] == ["l4"]
    client.cancel()


async def test_resume_from_a_revision_only_in_the_store_log_reads_the_log(
    servers: Servers,
) -> None:
    """Same epoch, revision gone from the (tiny) ring but kept in the store's log: the
    missed events come from the log, then the stream follows the ring — no snapshot."""
    server = await servers.start(ring_capacity=2)
    channel = server.channel()
    revisions = [await create_lock(channel, lock_pb_of(f"l{i}")) for i in range(8)]
    epoch = (await cluster_status(channel)).epoch

    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revisions[0])
    follower = Follower(client, epoch, revisions[0])
    assert [e.name for e in await follower.until(revisions[-1])] == [f"l{i}" for i in range(1, 8)]
    later = await create_lock(channel, lock_pb_of("l8"))
    assert [e.name for e in await follower.until(later)] == ["l8"]
    assert all(r.WhichOneof("message") != "snapshot_begin" for r in client.received)
    client.cancel()


async def test_a_caught_up_agent_resumes_without_a_snapshot(servers: Servers) -> None:
    """Hello at exactly the server's revision: nothing to send but later events."""
    server = await servers.start()
    channel = server.channel()
    revision = await create_lock(channel, lock_pb_of("a"))
    epoch = (await cluster_status(channel)).epoch
    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revision)
    follower = Follower(client, epoch, revision)
    later = await create_lock(channel, lock_pb_of("b"))
    assert [e.name for e in await follower.until(later)] == ["b"]
    client.cancel()


async def test_a_revision_older_than_the_log_gets_a_snapshot_inline(servers: Servers) -> None:
    """The log was compacted past the agent's revision and the ring no longer has it:
    the same stream carries a snapshot, then events."""
    server = await servers.start(ring_capacity=1, retention_age=timedelta(0), retention_count=0)
    channel = server.channel()
    revisions = [await create_lock(channel, lock_pb_of(f"l{i}")) for i in range(5)]
    assert await server.store.compact(now()) == 5
    epoch = (await cluster_status(channel)).epoch

    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revisions[1])
    snapshot = await read_snapshot(client)
    assert (snapshot.begin.epoch, snapshot.begin.revision) == (epoch, revisions[-1])
    assert snapshot.lock_names() == [f"l{i}" for i in range(5)]
    follower = Follower(client, epoch, revisions[-1])
    later = await create_lock(channel, lock_pb_of("l5"))
    assert [e.name for e in await follower.until(later)] == ["l5"]
    client.cancel()


async def test_a_revision_still_in_the_ring_resumes_even_after_compaction(
    servers: Servers,
) -> None:
    """The ring serves a resume on its own: a compacted store log does not force a snapshot
    when the agent's revision sits at a batch boundary in the ring."""
    server = await servers.start(ring_capacity=1, retention_age=timedelta(0), retention_count=0)
    channel = server.channel()
    revisions = [await create_lock(channel, lock_pb_of(f"l{i}")) for i in range(3)]
    await server.store.compact(now())
    epoch = (await cluster_status(channel)).epoch
    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revisions[1])
    follower = Follower(client, epoch, revisions[1])
    assert [e.name for e in await follower.until(revisions[2])] == ["l2"]
    client.cancel()


@pytest.mark.parametrize("applied", [0, 3, 1000])
async def test_another_epoch_gets_a_snapshot(servers: Servers, applied: int) -> None:
    """An agent whose epoch is not the server's (a restored or new store) gets a snapshot,
    whatever revision it claims."""
    server = await servers.start()
    channel = server.channel()
    for index in range(3):
        await create_lock(channel, lock_pb_of(f"l{index}"))
    status = await cluster_status(channel)
    client = await WatchClient.open(channel, epoch="another-history", applied_revision=applied)
    snapshot = await read_snapshot(client)
    assert (snapshot.begin.epoch, snapshot.begin.revision) == (status.epoch, status.revision)
    assert snapshot.lock_names() == ["l0", "l1", "l2"]
    client.cancel()


async def test_an_agent_ahead_of_the_server_is_reset_and_the_stream_closes(
    servers: Servers,
) -> None:
    """Same epoch but a revision the server never reached: Reset(AHEAD_OF_SERVER) with a
    retry_after, then the stream ends."""
    server = await servers.start()
    channel = server.channel()
    revision = await create_lock(channel, lock_pb_of("a"))
    epoch = (await cluster_status(channel)).epoch
    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revision + 5)
    reset = (await client.read()).reset
    assert reset.reason == watch_pb.RESET_REASON_AHEAD_OF_SERVER
    assert reset.retry_after.ToTimedelta() > timedelta(0)
    assert str(revision + 5) in reset.detail
    await client.expect_end()
    assert (await client.call.code()) is grpc.StatusCode.OK


async def test_heartbeats_carry_the_state_and_never_come_faster_than_the_interval(
    servers: Servers,
) -> None:
    """An idle stream gets heartbeats with epoch, revision, server_time and store_healthy;
    consecutive heartbeats, and a heartbeat after a batch, are at least the interval apart
    (a lower bound only: a loaded machine may send them later)."""
    interval = timedelta(milliseconds=200)
    server = await servers.start(watch=WatchSettings(heartbeat_interval=interval))
    channel = server.channel()
    revision = await create_lock(channel, lock_pb_of("a"))
    epoch = (await cluster_status(channel)).epoch
    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revision)

    beats = [(await client.read_kind("heartbeat")).heartbeat for _ in range(5)]
    for beat in beats:
        assert (beat.epoch, beat.revision, beat.store_healthy) == (epoch, revision, True)
        assert beat.interval.ToTimedelta() == interval
        assert abs(beat.server_time.ToDatetime().timestamp() - now().timestamp()) < 60
    times = [beat.server_time.ToDatetime() for beat in beats]
    tolerance = timedelta(milliseconds=10)  # wall clock vs the server's monotonic timer
    assert all(b - a >= interval - tolerance for a, b in itertools.pairwise(times))

    later = await create_lock(channel, lock_pb_of("b"))
    follower = Follower(client, epoch, revision)
    events = await follower.until(later)
    beat = (await client.read_kind("heartbeat")).heartbeat
    assert beat.revision == later
    assert beat.server_time.ToDatetime() - events[-1].commit_time.ToDatetime() >= (
        interval - tolerance
    )
    client.cancel()


async def test_acks_show_up_in_the_cluster_status(servers: Servers) -> None:
    """Hello registers the agent; an Ack sets its applied revision, state and lag."""
    server = await servers.start()
    channel = server.channel()
    await create_lock(channel, lock_pb_of("a"))
    client = await WatchClient.open(channel, agent_id="node-7")
    snapshot = await read_snapshot(client)
    await client.ack(snapshot.begin.epoch, snapshot.begin.revision)

    async def acked() -> cluster_pb.AgentStatus | None:
        agents = {a.server_id: a for a in (await cluster_status(channel)).agents}
        agent = agents.get("node-7")
        return agent if agent is not None and agent.HasField("last_ack") else None

    agent = await eventually(acked, what="the ack to be recorded")
    assert agent.connected
    assert agent.applied_revision == snapshot.begin.revision
    assert agent.state == cluster_pb.AGENT_SYNC_STATE_SYNCED
    assert agent.lag == 0

    client.cancel()

    async def disconnected() -> bool:
        agents = {a.server_id: a for a in (await cluster_status(channel)).agents}
        return not agents["node-7"].connected

    await eventually(disconnected, what="the agent to show as disconnected")


async def test_a_stream_must_open_with_a_hello_naming_the_agent(servers: Servers) -> None:
    """An Ack first, or a Hello without agent_id, ends the call with INVALID_ARGUMENT."""
    server = await servers.start()
    stub = WatchServiceStub(server.channel())

    call = stub.WatchLocks()
    await call.write(watch_pb.WatchLocksRequest(ack=watch_pb.WatchAck(applied_revision=1)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async with asyncio.timeout(15):
            await call.read()
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    call = stub.WatchLocks()
    await call.write(watch_pb.WatchLocksRequest(hello=watch_pb.WatchHello(agent_id="")))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        async with asyncio.timeout(15):
            await call.read()
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_id" in (raised.value.details() or "")


async def test_the_snapshot_and_the_events_after_it_lose_nothing_under_concurrent_writes(
    servers: Servers,
) -> None:
    """Streams opened while writes are in flight end up with exactly the server's state:
    snapshot + events, applied in order, equal the final set of locks."""
    server = await servers.start()
    channel = server.channel()
    milestones = [asyncio.Event() for _ in range(5)]

    async def writer() -> None:
        for index in range(60):
            await create_lock(channel, lock_pb_of(f"w{index:02}"))
            if index % 3 == 2:
                await delete_lock(channel, f"w{index - 1:02}")
            if index % 12 == 5:
                milestones[index // 12].set()

    async def watcher(number: int) -> tuple[set[str], int]:
        await milestones[number].wait()
        client = await WatchClient.open(channel, agent_id=f"agent-{number}")
        snapshot = await read_snapshot(client)
        names = set(snapshot.lock_names())
        follower = Follower(client, snapshot.begin.epoch, snapshot.begin.revision)
        for event in await follower.until(80):  # 60 puts + 20 deletes
            if event.type == watch_pb.EVENT_TYPE_PUT:
                names.add(event.name)
            else:
                names.remove(event.name)
        client.cancel()
        return names, follower.revision

    writing = asyncio.create_task(writer())
    views = await asyncio.gather(*(watcher(n) for n in range(5)))
    await writing
    expected = {f"w{i:02}" for i in range(60)} - {f"w{i - 1:02}" for i in range(2, 60, 3)}
    for names, revision in views:
        assert (names, revision) == (expected, 80)


async def test_resuming_into_old_ring_batches_is_not_a_slow_consumer(servers: Servers) -> None:
    """An agent that was away longer than slow_consumer_after resumes from batches that
    entered the ring long ago: it receives them, it is not reset as a slow consumer (the
    lag counts from when the stream could first send a batch)."""
    slow_after = timedelta(seconds=1)
    server = await servers.start(watch=WatchSettings(slow_consumer_after=slow_after))
    channel = server.channel()
    revisions = [await create_lock(channel, lock_pb_of(f"l{i}")) for i in range(3)]
    epoch = (await cluster_status(channel)).epoch
    old_enough = now() + slow_after + timedelta(milliseconds=200)
    await eventually(lambda: now() > old_enough, what="the batches to age")

    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revisions[0])
    follower = Follower(client, epoch, revisions[0])
    assert [e.name for e in await follower.until(revisions[-1])] == ["l1", "l2"]
    later = await create_lock(channel, lock_pb_of("l3"))
    assert [e.name for e in await follower.until(later)] == ["l3"]
    client.cancel()


async def test_a_create_awaiting_acks_marks_its_batch_instead_of_an_ack_request(
    servers: Servers,
) -> None:
    """CreateLock with await_ack: the batch holding the lock asks for the ack itself, and
    the status call awaiting that revision adds no AckRequest; a plain create's batch
    asks for nothing, and a status call awaiting it then sends an AckRequest."""
    server = await servers.start()
    channel = server.channel()
    client = await WatchClient.open(channel)
    snapshot = await read_snapshot(client)
    follower = Follower(client, snapshot.begin.epoch, snapshot.begin.revision)
    cluster = ClusterServiceStub(channel)

    request = lock_pb.CreateLockRequest(lock=lock_pb_of("awaited"), await_ack=True)
    awaited = (await LockServiceStub(channel).CreateLock(request)).revision
    batch = await follower.next_batch()
    assert (batch.to_revision, batch.ack_requested) == (awaited, True)
    await cluster.GetClusterStatus(cluster_pb.GetClusterStatusRequest(await_revision=awaited))

    plain = await create_lock(channel, lock_pb_of("plain"))
    batch = await follower.next_batch()  # an AckRequest first would fail here
    assert (batch.to_revision, batch.ack_requested) == (plain, False)
    await cluster.GetClusterStatus(cluster_pb.GetClusterStatusRequest(await_revision=plain))
    asked = await client.read_kind("ack_request")
    assert asked.ack_request.revision == plain
    client.cancel()

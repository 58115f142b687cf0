"""Fan-out under load: many streams, a stalled reader, and snapshot admission by bytes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from lockd.auth.watch_stream import WatchSettings
from lockd.v1 import watch_service_pb2 as watch_pb
from tests.api.conftest import Servers
from tests.api.helpers import (
    Follower,
    WatchClient,
    cluster_status,
    create_lock,
    delete_lock,
    lock_pb_of,
    read_snapshot,
    start_following,
)
from tests.support import eventually

BIG = "x" * 4000  # about 4 KB per lock: a few batches fill an HTTP/2 window


async def test_a_thousand_streams_all_receive_the_same_events_in_order(
    servers: Servers,
) -> None:
    """1000 concurrent streams over a few channels each get a snapshot, then every event,
    in the same order, in contiguous batches."""
    streams, channels = 1000, 4
    server = await servers.start()
    writer = server.channel()
    await create_lock(writer, lock_pb_of("before"))
    pool = [server.channel() for _ in range(channels)]
    clients = await asyncio.gather(
        *(
            WatchClient.open(pool[index % channels], agent_id=f"agent-{index}")
            for index in range(streams)
        )
    )
    followers = await asyncio.gather(*(start_following(client, within=60) for client in clients))
    assert {(f.epoch, f.revision) for f in followers} == {(followers[0].epoch, 1)}

    for index in range(15):
        await create_lock(writer, lock_pb_of(f"lock-{index:02}", user=f"user-{index}"))
        if index % 5 == 4:
            await delete_lock(writer, f"lock-{index - 2:02}")
    final = (await cluster_status(writer)).revision
    assert final == 1 + 15 + 3

    seen = await asyncio.gather(*(follower.until(final, within=60) for follower in followers))
    expected = [(e.revision, e.type, e.name) for e in seen[0]]
    assert [revision for revision, _, _ in expected] == list(range(2, final + 1))
    for events in seen:
        assert [(e.revision, e.type, e.name) for e in events] == expected
    for client in clients:
        client.cancel()


async def test_a_stalled_reader_is_reset_and_resumes_without_missing_a_revision(
    servers: Servers,
) -> None:
    """A reader that stops reading while the tiny ring overruns gets Reset(SLOW_CONSUMER)
    once it reads again; resuming from its last applied revision delivers every revision
    it missed, none skipped, without a snapshot."""
    server = await servers.start(ring_capacity=4)
    writer = server.channel()
    client = await WatchClient.open(server.channel(), agent_id="slow")
    follower = await start_following(client)
    epoch = follower.epoch

    # The reader reads nothing now: HTTP/2 flow control soon blocks the server's writes.
    total = 120
    for index in range(total):
        await create_lock(writer, lock_pb_of(f"lock-{index:03}", message=BIG))

    while True:
        response = await client.read()
        if response.WhichOneof("message") == "reset":
            break
        assert response.WhichOneof("message") in ("events", "heartbeat")
        if response.WhichOneof("message") == "events":
            follower.apply(response.events)
    reset = response.reset
    assert reset.reason == watch_pb.RESET_REASON_SLOW_CONSUMER
    assert reset.retry_after.ToTimedelta() > timedelta(0)
    await client.expect_end()
    applied = follower.revision
    assert applied < total, "the reader was never held back"

    resumed = await WatchClient.open(
        server.channel(), agent_id="slow", epoch=epoch, applied_revision=applied
    )
    again = Follower(resumed, epoch, applied)
    events = await again.until(total)
    assert [e.name for e in events] == [f"lock-{index:03}" for index in range(applied, total)]
    assert all(r.WhichOneof("message") != "snapshot_begin" for r in resumed.received)
    resumed.cancel()


async def test_snapshots_beyond_the_byte_budget_are_refused_as_overloaded(
    servers: Servers,
) -> None:
    """With 1 MiB of snapshot bytes in flight allowed, a ~600 KB snapshot held up by a
    reader that stopped reading makes the next one of that size end with
    Reset(OVERLOADED) and a retry_after of at least the configured one, while a resume and
    a small snapshot still fit; once the first snapshot is through, big ones work again."""
    retry_after = timedelta(seconds=1)
    server = await servers.start(
        watch=WatchSettings(snapshot_bytes_in_flight=1 << 20, retry_after=retry_after)
    )
    writer = server.channel()
    for index in range(150):  # ~600 KB of snapshot: far more than one HTTP/2 window
        await create_lock(writer, lock_pb_of(f"lock-{index:03}", message=BIG))

    holder = await WatchClient.open(server.channel(), agent_id="holder")
    await holder.read_kind("snapshot_begin")  # its bytes are in flight; now stop reading

    refused = await WatchClient.open(server.channel(), agent_id="refused")
    reset = (await refused.read()).reset
    assert reset.reason == watch_pb.RESET_REASON_OVERLOADED
    assert retry_after <= reset.retry_after.ToTimedelta() <= 2 * retry_after
    await refused.expect_end()

    # A resume needs no snapshot, so it is not refused while the budget is spent.
    status = await cluster_status(writer)
    resumer = await WatchClient.open(
        server.channel(), agent_id="resumer", epoch=status.epoch, applied_revision=status.revision
    )
    later = await create_lock(writer, lock_pb_of("later"))
    assert [
        e.name for e in await Follower(resumer, status.epoch, status.revision).until(later)
    ] == ["later"]

    # A small snapshot fits beside the held one (a count of one snapshot would refuse it).
    for index in range(5, 150):
        await delete_lock(writer, f"lock-{index:03}")
    small = await WatchClient.open(server.channel(), agent_id="small")
    assert (await read_snapshot(small)).lock_names() == [f"lock-{i:03}" for i in range(5)] + [
        "later"
    ]

    # The holder reads on: its snapshot completes and the budget is free again.
    held = 0
    while (response := await holder.read()).WhichOneof("message") == "snapshot_chunk":
        held += len(response.snapshot_chunk.resources)
    assert (response.WhichOneof("message"), held) == ("snapshot_end", 1 + 150)
    for index in range(5, 150):
        await create_lock(writer, lock_pb_of(f"lock-{index:03}", message=BIG))

    async def snapshot_granted() -> bool:
        client = await WatchClient.open(server.channel(), agent_id="late")
        first = await client.read()
        client.cancel()
        return first.WhichOneof("message") == "snapshot_begin"

    await eventually(snapshot_granted, what="a big snapshot after the first one finished")
    for client in (holder, resumer, small):
        client.cancel()


async def test_a_reader_stalled_past_the_time_bound_is_dropped_with_unavailable(
    servers: Servers,
) -> None:
    """A write blocked longer than slow_consumer_after cannot carry a Reset: the stream
    ends with UNAVAILABLE (never a clean close), and a resume from the last applied
    revision delivers everything after it."""
    server = await servers.start(watch=WatchSettings(slow_consumer_after=timedelta(seconds=1)))
    writer = server.channel()
    client = await WatchClient.open(server.channel(), agent_id="stuck")
    follower = await start_following(client)
    total = 40
    for index in range(total):
        await create_lock(writer, lock_pb_of(f"lock-{index:03}", message=BIG))

    async def dropped() -> bool:
        agents = {a.server_id: a for a in (await cluster_status(writer)).agents}
        return not agents["stuck"].connected

    await eventually(dropped, what="the server to drop the stalled stream")

    async def drain() -> None:
        while True:
            await follower.next_batch()

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await drain()
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "slow consumer" in (raised.value.details() or "")
    assert follower.revision < total

    resumed = await WatchClient.open(
        server.channel(),
        agent_id="stuck",
        epoch=follower.epoch,
        applied_revision=follower.revision,
    )
    events = await Follower(resumed, follower.epoch, follower.revision).until(total)
    assert [e.name for e in events] == [
        f"lock-{index:03}" for index in range(follower.revision, total)
    ]
    resumed.cancel()

"""State across restarts of the auth server (same SQLite file), and lock expiry."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
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


async def test_a_restart_keeps_locks_revision_and_epoch(servers: Servers) -> None:
    """Stop and start on the same file: same epoch, same revision, same locks (stamps
    included), and a fresh stream's snapshot says so."""
    first = await servers.start()
    channel = first.channel()
    expires = now() + timedelta(hours=1)
    await create_lock(channel, lock_pb_of("a", message="why", expires=expires))
    await create_lock(channel, lock_pb_of("b", role="dev"))
    await delete_lock(channel, "b")
    await create_lock(channel, lock_pb_of("c", server_id="node-1"))
    before = await cluster_status(channel)
    listed = await LockServiceStub(channel).ListLocks(lock_pb.ListLocksRequest())
    await first.close_channels()
    await first.stop()

    second = await servers.start(db=first.db)
    channel = second.channel()
    after = await cluster_status(channel)
    assert (after.epoch, after.revision) == (before.epoch, before.revision) == (before.epoch, 4)
    assert await LockServiceStub(channel).ListLocks(lock_pb.ListLocksRequest()) == listed
    assert [lock.name for lock in listed.locks] == ["a", "c"]

    client = await WatchClient.open(channel)
    snapshot = await read_snapshot(client)
    assert (snapshot.begin.epoch, snapshot.begin.revision) == (before.epoch, 4)
    assert snapshot.lock_names() == ["a", "c"]
    client.cancel()


async def test_an_agent_resumes_across_a_restart_without_a_snapshot(servers: Servers) -> None:
    """After a restart the ring is empty; an agent at the server's revision, or behind it
    within the log, still resumes with events only."""
    first = await servers.start()
    channel = first.channel()
    revisions = [await create_lock(channel, lock_pb_of(f"l{i}")) for i in range(3)]
    epoch = (await cluster_status(channel)).epoch
    await first.close_channels()
    await first.stop()

    second = await servers.start(db=first.db)
    channel = second.channel()
    current = await WatchClient.open(
        channel, agent_id="current", epoch=epoch, applied_revision=revisions[-1]
    )
    behind = await WatchClient.open(
        channel, agent_id="behind", epoch=epoch, applied_revision=revisions[0]
    )
    later = await create_lock(channel, lock_pb_of("l3"))
    assert [e.name for e in await Follower(current, epoch, revisions[-1]).until(later)] == ["l3"]
    events = await Follower(behind, epoch, revisions[0]).until(later)
    assert [e.name for e in events] == ["l1", "l2", "l3"]
    for client in (current, behind):
        kinds = {response.WhichOneof("message") for response in client.received}
        assert kinds <= {"events", "heartbeat"}, client.received
        client.cancel()


async def test_expiry_is_an_ordered_event_after_earlier_writes(servers: Servers) -> None:
    """A lock whose expires passes gets an EXPIRE event with the next revision after every
    earlier put and delete, within a few seconds, and the audit trail records it."""
    server = await servers.start(fake_clock=True)
    channel = server.channel()
    client = await WatchClient.open(channel)
    snapshot = await read_snapshot(client)
    follower = Follower(client, snapshot.begin.epoch, snapshot.begin.revision)

    await create_lock(channel, lock_pb_of("before", user="bob"))
    expires = servers.clock.now() + timedelta(seconds=1.5)
    await create_lock(channel, lock_pb_of("short", message="brief", expires=expires))
    await create_lock(channel, lock_pb_of("other", role="dev"))
    last_write = await delete_lock(channel, "before")
    servers.clock.advance(1.5)

    events = await follower.until(last_write + 1, within=20)
    expire = events[-1]
    assert (expire.type, expire.kind, expire.name) == (
        watch_pb.EVENT_TYPE_EXPIRE,
        res_pb.RESOURCE_KIND_LOCK,
        "short",
    )
    assert not expire.HasField("resource")
    assert expire.commit_time.ToDatetime().timestamp() >= expires.timestamp()
    assert [e.type for e in events[:-1]] == [watch_pb.EVENT_TYPE_PUT] * 3 + [
        watch_pb.EVENT_TYPE_DELETE
    ]

    records = server.audit.of("lock.expired")
    assert [record.fields["name"] for record in records] == ["short"]
    assert records[0].fields["message"] == "brief"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await LockServiceStub(channel).GetLock(lock_pb.GetLockRequest(name="short"))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    client.cancel()


async def test_a_lock_that_expired_while_the_server_was_down_expires_on_start(
    servers: Servers,
) -> None:
    """The first expiry pass after a restart commits the EXPIRE that was missed: an agent
    resuming from before it sees it as the next revision."""
    first = await servers.start(fake_clock=True)
    channel = first.channel()
    await create_lock(channel, lock_pb_of("stays"))
    expires = servers.clock.now() + timedelta(seconds=1)
    revision = await create_lock(channel, lock_pb_of("gone", expires=expires))
    epoch = (await cluster_status(channel)).epoch
    await first.close_channels()
    await first.stop()

    servers.clock.advance(1.1)
    second = await servers.start(db=first.db, fake_clock=True)
    channel = second.channel()
    client = await WatchClient.open(channel, epoch=epoch, applied_revision=revision)
    events = await Follower(client, epoch, revision).until(revision + 1)
    assert [(e.type, e.name) for e in events] == [(watch_pb.EVENT_TYPE_EXPIRE, "gone")]
    assert [r.fields["name"] for r in second.audit.of("lock.expired")] == ["gone"]
    listed = await LockServiceStub(channel).ListLocks(lock_pb.ListLocksRequest())
    assert [lock.name for lock in listed.locks] == ["stays"]
    client.cancel()

"""WatchLocks with packed locks (WatchHello.packed_locks), over real gRPC: an agent that
asks gets every lock packed — in snapshots, live batches and batches read from the log —
and one that does not ask gets them as Resources, from the same server at once."""

from __future__ import annotations

from lockd.domain.lock import Lock, LockTarget
from lockd.domain.packed_form import from_packed_form
from lockd.v1 import watch_service_pb2 as watch_pb
from tests.api.conftest import Servers
from tests.api.helpers import (
    Follower,
    WatchClient,
    create_lock,
    delete_lock,
    lock_pb_of,
    read_snapshot,
)


def packed_lock(data: bytes) -> Lock:
    """The lock a packed form holds, without its creation stamp (the server's)."""
    lock = from_packed_form(data).unpack()
    return Lock(lock.name, lock.target, lock.message, lock.expires)


async def test_an_agent_that_asks_gets_snapshot_locks_packed(servers: Servers) -> None:
    """The snapshot's locks come as packed bytes, counted with the resources; the
    preference (and any role) stays a Resource."""
    server = await servers.start()
    channel = server.channel()
    await create_lock(channel, lock_pb_of("l1", user="alice", message="stolen laptop"))
    await create_lock(channel, lock_pb_of("l2", role="dev", server_id="node-9"))

    client = await WatchClient.open(channel, packed_locks=True)
    snapshot = await read_snapshot(client)
    assert snapshot.begin.count == 3
    assert snapshot.kinds() == ["cluster_auth_preference"]
    assert sorted(map(packed_lock, snapshot.packed), key=lambda lock: lock.name) == [
        Lock("l1", LockTarget(user="alice"), "stolen laptop"),
        Lock("l2", LockTarget(role="dev", server_id="node-9")),
    ]
    client.cancel()


async def test_a_packed_and_a_plain_stream_get_the_same_batch_each_in_its_form(
    servers: Servers,
) -> None:
    """One put reaches an agent that asked as `packed_lock` and one that did not as a
    `resource`; a delete carries neither."""
    server = await servers.start()
    channel = server.channel()
    streams = {}
    for packed in (True, False):
        client = await WatchClient.open(channel, f"agent-{packed}", packed_locks=packed)
        snapshot = await read_snapshot(client)
        streams[packed] = Follower(client, snapshot.begin.epoch, snapshot.begin.revision)

    put = await create_lock(channel, lock_pb_of("l1", user="bob"))
    deleted = await delete_lock(channel, "l1")
    packed_events = await streams[True].until(deleted)
    plain_events = await streams[False].until(deleted)

    assert [event.revision for event in packed_events] == [put, deleted]
    assert packed_events[0].WhichOneof("body") == "packed_lock"
    assert packed_lock(packed_events[0].packed_lock) == Lock("l1", LockTarget(user="bob"))
    assert plain_events[0].WhichOneof("body") == "resource"
    assert plain_events[0].resource.lock.target.user == "bob"
    assert packed_events[1].WhichOneof("body") is plain_events[1].WhichOneof("body") is None
    for follower in streams.values():
        follower.client.cancel()


async def test_a_resume_from_the_log_sends_its_locks_packed(servers: Servers) -> None:
    """Batches read back from the store's log for a resuming agent are packed as well."""
    server = await servers.start(ring_capacity=1)
    channel = server.channel()
    client = await WatchClient.open(channel, packed_locks=True)
    snapshot = await read_snapshot(client)
    client.cancel()
    for index in range(3):  # more batches than the ring holds: the rest from the log
        await create_lock(channel, lock_pb_of(f"l{index}", user=f"u{index}"))

    resumed = await WatchClient.open(
        channel,
        epoch=snapshot.begin.epoch,
        applied_revision=snapshot.begin.revision,
        packed_locks=True,
    )
    follower = Follower(resumed, snapshot.begin.epoch, snapshot.begin.revision)
    events = await follower.until(snapshot.begin.revision + 3)
    assert [event.type for event in events] == [watch_pb.EVENT_TYPE_PUT] * 3
    assert [packed_lock(event.packed_lock).target.user for event in events] == ["u0", "u1", "u2"]
    resumed.cancel()

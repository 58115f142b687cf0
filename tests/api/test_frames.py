"""Frame sizes: every WatchLocks message fits gRPC's default 4 MiB receive limit."""

from __future__ import annotations

from lockd.auth.hub import MAX_FRAME_BYTES, encode_within
from lockd.domain.lock import MAX_MESSAGE_BYTES, MAX_TARGET_VALUE_LENGTH, TARGET_FIELDS
from lockd.v1 import resources_pb2 as res_pb
from tests.api.conftest import Servers
from tests.api.helpers import Follower, WatchClient, cluster_status, create_lock, read_snapshot

COUNT = 300  # ~15 KB each: ~4.4 MB in all, more than one default-sized gRPC message


def _biggest_lock(index: int) -> res_pb.Lock:
    """A lock at the size bounds: every target field long, the longest message."""
    value = "v" * (MAX_TARGET_VALUE_LENGTH - 8)
    target = res_pb.LockTarget(**dict.fromkeys(TARGET_FIELDS, f"{index:04}-{value}"))
    return res_pb.Lock(name=f"big-{index:04}", target=target, message="m" * MAX_MESSAGE_BYTES)


async def test_big_snapshots_and_catch_ups_arrive_in_frames_a_default_client_accepts(
    servers: Servers,
) -> None:
    """Hundreds of maximal locks: the snapshot comes in chunks and a resume from the log
    in contiguous batches, each at most MAX_FRAME_BYTES — a client with gRPC's default
    4 MiB receive limit gets all of it."""
    server = await servers.start(ring_capacity=1)
    channel = server.channel()
    for index in range(COUNT):
        await create_lock(channel, _biggest_lock(index))
    epoch = (await cluster_status(channel)).epoch

    client = await WatchClient.open(channel, agent_id="fresh")
    snapshot = await read_snapshot(client)
    assert len(snapshot.lock_names()) == COUNT
    assert snapshot.chunks > 1
    assert all(response.ByteSize() <= MAX_FRAME_BYTES for response in client.received)
    client.cancel()

    resumed = await WatchClient.open(channel, agent_id="behind", epoch=epoch, applied_revision=1)
    follower = Follower(resumed, epoch, 1)
    events = await follower.until(COUNT)
    assert [e.name for e in events] == [f"big-{index:04}" for index in range(1, COUNT)]
    assert follower.batches > 1
    assert all(response.ByteSize() <= MAX_FRAME_BYTES for response in resumed.received)
    resumed.cancel()


def test_encode_within_splits_into_consecutive_parts_under_the_limit() -> None:
    """Halving keeps order and contiguity, every part fits, and a lone oversized item is
    sent alone rather than dropped."""

    def encode(items: object) -> bytes:
        return b"".join(bytes(item) for item in items)  # type: ignore[attr-defined]

    items = [bytes(100)] * 37 + [bytes(1000)] + [bytes(100)] * 5
    parts = encode_within(items, encode, limit=450)
    assert [item for part, _ in parts for item in part] == items
    for part, frame in parts:
        assert frame == encode(part)
        assert len(frame) <= 450 or len(part) == 1
    assert [len(part) for part, _ in parts if len(encode(part)) > 450] == [1]

"""Helpers of the API suite: a raw WatchLocks client, builders and polling.

`WatchClient` speaks the protocol by hand (docs/protocol.md) with the generated stub, so
the tests see exactly what an agent written by someone else would see.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from lockd.v1.watch_service_pb2_grpc import WatchServiceStub
from tests.support import WAIT

T = TypeVar("T")

# Generous: the suite must pass on a loaded 2-core machine.

# Like the server: no BDP probing, so HTTP/2 windows stay at their small defaults and a
# reader that stops reading soon blocks the server's writes. A local subchannel pool gives
# every channel its own connection: a stalled stream never shares a connection (and its
# flow-control window) with the channel a test writes through.
CHANNEL_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.use_local_subchannel_pool", 1)]


def now() -> datetime:
    return datetime.now(UTC)


def ts(moment: datetime) -> Timestamp:
    """A protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def lock_pb_of(
    name: str,
    *,
    user: str = "",
    role: str = "",
    server_id: str = "",
    message: str = "",
    expires: datetime | None = None,
) -> res_pb.Lock:
    """A lock message; user defaults to "alice" when no target field is given."""
    if not (user or role or server_id):
        user = "alice"
    lock = res_pb.Lock(
        name=name,
        target=res_pb.LockTarget(user=user, role=role, server_id=server_id),
        message=message,
    )
    if expires is not None:
        lock.expires.CopyFrom(ts(expires))
    return lock


def open_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


async def create_lock(channel: grpc.aio.Channel, lock: res_pb.Lock) -> int:
    """CreateLock over the raw stub; the committed revision."""
    response = await LockServiceStub(channel).CreateLock(lock_pb.CreateLockRequest(lock=lock))
    return int(response.revision)


async def delete_lock(channel: grpc.aio.Channel, name: str) -> int:
    """DeleteLock over the raw stub; the committed revision."""
    response = await LockServiceStub(channel).DeleteLock(lock_pb.DeleteLockRequest(name=name))
    return int(response.revision)


async def cluster_status(channel: grpc.aio.Channel) -> cluster_pb.GetClusterStatusResponse:
    return await ClusterServiceStub(channel).GetClusterStatus(cluster_pb.GetClusterStatusRequest())


class StreamEnded(Exception):
    """The server closed the WatchLocks stream."""


@dataclass
class WatchClient:
    """One raw WatchLocks stream: send Hello/Ack, read responses one by one."""

    call: Any
    agent_id: str
    received: list[watch_pb.WatchLocksResponse] = field(default_factory=list)

    @classmethod
    async def open(
        cls,
        channel: grpc.aio.Channel,
        agent_id: str = "agent-1",
        epoch: str = "",
        applied_revision: int = 0,
        packed_locks: bool = False,
    ) -> WatchClient:
        call = WatchServiceStub(channel).WatchLocks()
        hello = watch_pb.WatchHello(
            agent_id=agent_id,
            epoch=epoch,
            applied_revision=applied_revision,
            version="test",
            packed_locks=packed_locks,
        )
        await call.write(watch_pb.WatchLocksRequest(hello=hello))
        return cls(call, agent_id)

    async def read(self, within: float = WAIT) -> watch_pb.WatchLocksResponse:
        """The next response; StreamEnded when the server closed the stream."""
        async with asyncio.timeout(within):
            response = await self.call.read()
        if response is grpc.aio.EOF:
            raise StreamEnded(f"stream of {self.agent_id} ended")
        self.received.append(response)
        return response  # type: ignore[no-any-return]

    async def read_kind(
        self, kind: str, within: float = WAIT, *, skip_heartbeats: bool = True
    ) -> watch_pb.WatchLocksResponse:
        """The next response, which must be of `kind` (heartbeats skipped by default)."""
        while True:
            response = await self.read(within)
            which = response.WhichOneof("message")
            if which == "heartbeat" and skip_heartbeats and kind != "heartbeat":
                continue
            assert which == kind, f"expected {kind}, got {response}"
            return response

    async def ack(self, epoch: str, revision: int) -> None:
        ack = watch_pb.WatchAck(
            epoch=epoch,
            applied_revision=revision,
            state=cluster_pb.AGENT_SYNC_STATE_SYNCED,
        )
        await self.call.write(watch_pb.WatchLocksRequest(ack=ack))

    async def expect_end(self, within: float = WAIT) -> None:
        """The server closes the stream (after a Reset): nothing else arrives."""
        async with asyncio.timeout(within):
            response = await self.call.read()
        assert response is grpc.aio.EOF, f"expected the end of the stream, got {response}"

    def cancel(self) -> None:
        self.call.cancel()


@dataclass
class Snapshot:
    begin: watch_pb.SnapshotBegin
    resources: list[res_pb.Resource]
    end: watch_pb.SnapshotEnd
    chunks: int
    packed: list[bytes]  # packed locks (a stream that asked for them)

    def lock_names(self) -> list[str]:
        return [r.lock.name for r in self.resources if r.WhichOneof("resource") == "lock"]

    def kinds(self) -> list[str]:
        return [str(r.WhichOneof("resource")) for r in self.resources]


async def read_snapshot(client: WatchClient, within: float = WAIT) -> Snapshot:
    """Begin, the chunks, End; checks that counts and revisions agree."""
    begin = (await client.read_kind("snapshot_begin", within)).snapshot_begin
    resources: list[res_pb.Resource] = []
    packed: list[bytes] = []
    chunks = 0
    while True:
        response = await client.read(within)
        which = response.WhichOneof("message")
        if which == "snapshot_chunk":
            chunks += 1
            resources.extend(response.snapshot_chunk.resources)
            packed.extend(response.snapshot_chunk.packed_locks)
            continue
        assert which == "snapshot_end", f"unexpected {which} inside a snapshot"
        end = response.snapshot_end
        break
    assert (end.epoch, end.revision, end.count) == (begin.epoch, begin.revision, begin.count)
    assert len(resources) + len(packed) == begin.count
    return Snapshot(begin, resources, end, chunks, packed)


@dataclass
class Follower:
    """Reads event batches and checks the protocol's promises as it goes.

    Every batch must continue exactly where the previous one ended (`from_revision` is
    the applied revision + 1), its events must be `from_revision..to_revision` without a
    gap, and it must carry the epoch of the stream.
    """

    client: WatchClient
    epoch: str
    revision: int
    events: list[watch_pb.WatchEvent] = field(default_factory=list)
    batches: int = 0
    heartbeats: list[watch_pb.Heartbeat] = field(default_factory=list)

    async def next_batch(self, within: float = WAIT) -> watch_pb.EventBatch:
        while True:
            response = await self.client.read(within)
            which = response.WhichOneof("message")
            if which == "heartbeat":
                self.heartbeats.append(response.heartbeat)
                continue
            assert which == "events", f"expected events, got {response}"
            batch = response.events
            self.apply(batch)
            return batch

    def apply(self, batch: watch_pb.EventBatch) -> None:
        """Check one batch against the promises above and take it as applied."""
        assert batch.epoch == self.epoch
        assert batch.from_revision == self.revision + 1, (
            f"batch {batch.from_revision}..{batch.to_revision} after {self.revision}"
        )
        revisions = [event.revision for event in batch.events]
        assert revisions == list(range(batch.from_revision, batch.to_revision + 1))
        self.revision = batch.to_revision
        self.events.extend(batch.events)
        self.batches += 1

    async def until(self, revision: int, within: float = WAIT) -> list[watch_pb.WatchEvent]:
        """Read batches until `revision` is applied; the events read on the way."""
        start = len(self.events)
        async with asyncio.timeout(within):
            while self.revision < revision:
                await self.next_batch(within)
        assert self.revision == revision, f"overshot {revision}: at {self.revision}"
        return self.events[start:]


async def start_following(client: WatchClient, within: float = WAIT) -> Follower:
    """Read the snapshot that opens a fresh stream; a Follower at its revision."""
    snapshot = await read_snapshot(client, within)
    return Follower(client, snapshot.begin.epoch, snapshot.begin.revision)

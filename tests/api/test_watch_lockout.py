"""When a watch stream asks whether its agent is locked out (lockd.auth.watch_stream):
once when it starts following, then only after a batch putting a lock that names one of
the agent's query targets — the other batches cannot lock it out."""

from __future__ import annotations

from collections.abc import AsyncIterator

from lockd.api.watch_servicer import ProtoWatchEncoder
from lockd.auth.hub import ReplicationHub
from lockd.auth.watch_stream import Hello, SnapshotGate, WatchSettings, WatchStream
from lockd.domain.events import ReplicatedState
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.ports import PutMode
from lockd.store.memory import MemoryStore
from lockd.testing import FakeClock
from lockd.v1 import watch_service_pb2 as pb

AGENT = "node-1"
TARGETS = (("server_id", AGENT),)


class Stream:
    """A WatchStream over a real hub and memory store, counting its lock-out checks."""

    def __init__(self, store: MemoryStore, hub: ReplicationHub, clock: FakeClock) -> None:
        self.store, self.hub, self.clock = store, hub, clock
        self.checks = 0
        self.locked_message: str | None = None
        settings = WatchSettings()
        self.stream = WatchStream(
            hub,
            store,
            clock,
            settings,
            SnapshotGate(settings.snapshot_bytes_in_flight),
            Hello(AGENT, "", 0),
            locked=self._locked,
            lock_targets=TARGETS,
        )
        self.frames: AsyncIterator[bytes] = aiter(self.stream.frames())

    def _locked(self) -> str | None:
        self.checks += 1
        return self.locked_message

    async def put(self, name: str, target: LockTarget) -> None:
        committed = await self.store.put(Lock(name, target), PutMode.CREATE, self.clock.now())
        self.hub.publish([committed.event])
        self.hub.flush()

    async def next_kind(self) -> str:
        """The kind of the next frame that is not a heartbeat."""
        while True:
            response = pb.WatchLocksResponse.FromString(await anext(self.frames))
            kind = response.WhichOneof("message")
            if kind != "heartbeat":
                return str(kind)


async def new_stream() -> Stream:
    """A stream of a new agent on an empty store; nothing read yet."""
    clock = FakeClock()
    store = MemoryStore()
    await store.open()
    snapshot = await store.snapshot()
    state = ReplicatedState.from_resources(snapshot.epoch, snapshot.revision, snapshot.resources)
    hub = ReplicationHub(state, ProtoWatchEncoder(), store.events_since, clock)
    return Stream(store, hub, clock)


async def open_stream() -> Stream:
    """A new stream read past its (empty) snapshot and first heartbeat: it follows."""
    stream = await new_stream()
    while await stream.next_kind() != "snapshot_end":
        pass
    # Following starts with a heartbeat (the proof of a current view), after its check.
    first = pb.WatchLocksResponse.FromString(await anext(stream.frames))
    assert first.WhichOneof("message") == "heartbeat"
    return stream


async def test_batches_of_locks_on_others_are_sent_without_a_lock_out_check() -> None:
    """Locks on a user and on another server go out; the only check is the one made
    when the stream started following."""
    stream = await open_stream()
    await stream.put("user-lock", LockTarget(user="alice"))
    assert await stream.next_kind() == "events"
    await stream.put("other-node", LockTarget(server_id="node-2"))
    assert await stream.next_kind() == "events"
    assert stream.checks == 1


async def test_a_batch_naming_the_agent_is_checked_and_ends_the_stream_when_locked() -> None:
    """A lock on the agent's server_id is checked after its batch; in force, the batch
    goes out first (the agent's view must see it), then Reset(LOCKED)."""
    stream = await open_stream()
    stream.locked_message = f'lock targeting ServerID:"{AGENT}"'
    await stream.put("this-node", LockTarget(server_id=AGENT))
    assert await stream.next_kind() == "events"
    assert await stream.next_kind() == "reset"
    assert stream.checks == 2


async def test_a_lock_in_force_when_following_starts_ends_the_stream_at_once() -> None:
    """A lock put after the agent was admitted but before the stream follows (it came
    with the snapshot) ends the stream before any batch."""
    stream = await new_stream()
    stream.locked_message = f'lock targeting ServerID:"{AGENT}"'
    kinds = [await stream.next_kind()]
    while kinds[-1] != "reset":
        kinds.append(await stream.next_kind())
    assert kinds[0] == "snapshot_begin"
    assert kinds[-2] == "snapshot_end"
    assert stream.stream.reset_reason is not None
    assert stream.stream.reset_reason.value == "locked"

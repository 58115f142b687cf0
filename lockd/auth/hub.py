"""The replication hub: the server's view of the replicated state and its fan-out ring.

Writers publish committed events; the hub applies them in revision order to its
`ReplicatedState` and appends them, serialised once, to the ring — both in one step, so
a snapshot (state + ring position) is always consistent. Events published within one
event-loop tick go out as one batch. A gap (events committed by a concurrent writer or,
with PostgreSQL, another replica) is filled from the store's log, never skipped. This is
the one ordering path: the auth server's own writes (at once) and a replica's tail of the
shared log (`lockd.auth.log_tailer`) both go through `publish`.

`rebase` replaces the state wholesale (a new epoch, or a log compacted past the hub):
every stream then ends with a Reset, since no batch leads from the old state to the new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

import structlog

from lockd.auth.ring import EventRing
from lockd.domain.events import Event, ReplicatedState
from lockd.domain.lock import Lock, TargetPair
from lockd.domain.ports import Clock
from lockd.domain.resources import ReplicatedResource

_log = structlog.get_logger("lockd.auth.hub")

FETCH_LIMIT = 1000
# Every WatchLocks frame stays well under gRPC's default 4 MiB receive limit, which an
# agent written by someone else is likely to keep: an event batch or snapshot chunk that
# would be bigger is split (a single resource is at most ~15 KB).
MAX_FRAME_BYTES = 1 << 20

T = TypeVar("T")


class ResetReason(StrEnum):
    TOO_OLD = "too_old"
    EPOCH_CHANGED = "epoch_changed"
    SLOW_CONSUMER = "slow_consumer"
    AHEAD_OF_SERVER = "ahead_of_server"
    SHUTDOWN = "shutdown"
    OVERLOADED = "overloaded"
    LOCKED = "locked"


class WatchEncoder(Protocol):
    """Serialises WatchLocks responses (implemented by lockd.api with protobuf)."""

    def events(
        self,
        epoch: str,
        events: Sequence[Event],
        ack_requested: bool = False,
        packed: bool = False,
    ) -> bytes:
        """An EventBatch frame; `ack_requested`: agents, ack it as soon as it is saved;
        `packed`: its locks in their packed form (lockd.domain.packed_form)."""
        ...

    def snapshot_begin(self, epoch: str, revision: int, count: int) -> bytes: ...

    def snapshot_chunk(
        self, resources: Sequence[ReplicatedResource], packed: bool = False
    ) -> bytes: ...

    def snapshot_end(self, epoch: str, revision: int, count: int) -> bytes: ...

    def heartbeat(
        self, epoch: str, revision: int, server_time: datetime, healthy: bool, interval: timedelta
    ) -> bytes: ...

    def reset(self, reason: ResetReason, retry_after: timedelta, detail: str) -> bytes: ...

    def ack_request(self, epoch: str, revision: int) -> bytes: ...


EventFetcher = Callable[[int, int], Awaitable[list[Event]]]


def encode_within(
    items: Sequence[T], encode: Callable[[Sequence[T]], bytes], limit: int = MAX_FRAME_BYTES
) -> list[tuple[Sequence[T], bytes]]:
    """`items` encoded as few consecutive frames of at most `limit` bytes as halving finds
    (a single item is never split, whatever its size); each part with its frame."""
    payload = encode(items)
    if len(payload) <= limit or len(items) <= 1:
        return [(items, payload)]
    middle = len(items) // 2
    return encode_within(items[:middle], encode, limit) + encode_within(
        items[middle:], encode, limit
    )


class ReplicationHub:
    def __init__(
        self,
        state: ReplicatedState,
        encoder: WatchEncoder,
        fetch: EventFetcher,
        clock: Clock,
        ring_capacity: int = 4096,
    ) -> None:
        self.state = state
        self.encoder = encoder
        self.ring = EventRing(ring_capacity)
        self._fetch = fetch
        self._clock = clock
        self._pending: dict[int, Event] = {}
        self._flush_scheduled = False
        self._filling: asyncio.Task[None] | None = None
        # Streams waiting for the next batch (or the close): one future each, released
        # together. Cheaper than an Event (whose timed-out waiters leave a deque in O(n))
        # plus an asyncio.timeout per stream and batch.
        self._waiters: set[asyncio.Future[None]] = set()
        # The snapshot frames of one (epoch, revision), encoded once for every stream
        # that snapshots at that revision (a thousand agents starting together).
        # Locks packed or not → ((epoch, revision), the frames of that snapshot).
        self._snapshots: dict[bool, tuple[tuple[str, int], list[bytes]]] = {}
        self.closing = False
        self.on_batch: list[Callable[[Sequence[Event]], None]] = []
        self.on_rebase: list[Callable[[ReplicatedState], None]] = []
        # Told when an agent says it applied more than the hub has (a replica that lags
        # the shared log, or a store that lost history: lockd.auth.log_tailer decides).
        self.on_ahead: list[Callable[[str, int], None]] = []
        # Whether a heartbeat may vouch for the hub's revision: the store answers and,
        # with replicas, the hub is at the shared log's head (set by the runtime).
        self.health: Callable[[], bool] = lambda: True
        # Bumped by `rebase`: a stream that started in another generation must reset.
        self.generation = 0
        self.rebase_reason = ResetReason.EPOCH_CHANGED
        self.last_event: Event | None = None
        # The highest revision somebody waits for (the agent registry's, set by the
        # runtime): a batch holding it is encoded asking for the acks.
        self.awaited: Callable[[], int] = lambda: 0

    @property
    def epoch(self) -> str:
        return self.state.epoch

    @property
    def revision(self) -> int:
        return self.state.revision

    @property
    def healthy(self) -> bool:
        return self.health()

    def seq_after(self, revision: int) -> int | None:
        """The ring sequence number of the batch that starts at revision + 1, if known.

        At the hub's own revision that is the next batch to be appended — also when the
        ring is still empty (right after a start), since every batch appended from now
        on starts after the current revision.
        """
        if revision == self.state.revision:
            return self.ring.next_seq
        return self.ring.seq_after(revision)

    def snapshot_frames(
        self, encode: Callable[[bool], list[bytes]], packed: bool = False
    ) -> list[bytes]:
        """The current state's snapshot frames: `encode(packed)`d once per epoch,
        revision and form (locks packed or not)."""
        key = (self.state.epoch, self.state.revision)
        cached = self._snapshots.get(packed)
        if cached is None or cached[0] != key:
            cached = self._snapshots[packed] = (key, encode(packed))
        return cached[1]

    def publish(self, events: Iterable[Event]) -> None:
        """Hand over committed events; they reach the ring on this loop tick."""
        for event in events:
            if event.revision > self.state.revision:
                self._pending[event.revision] = event
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def flush(self) -> None:
        """Apply what `publish` was handed now, instead of on the next loop tick."""
        self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        batch: list[Event] = []
        while (event := self._pending.pop(self.state.revision + 1, None)) is not None:
            self.state.apply(event)
            batch.append(event)
        # Events at or below the applied revision arrived twice (e.g. fetched and published).
        for stale in [rev for rev in self._pending if rev <= self.state.revision]:
            del self._pending[stale]
        if batch:
            epoch, awaited = self.state.epoch, self.awaited()

            def encode(part: Sequence[Event]) -> bytes:
                return self.encoder.events(epoch, part, _holds(part, awaited))

            now = self._clock.monotonic()
            for part, payload in encode_within(batch, encode):
                first, last = part[0].revision, part[-1].revision
                asks = _holds(part, awaited)
                # The same events packed: no bigger than the Resource form but for a few
                # bytes a lock, so well within the receive limit `encode_within` keeps to.
                packed = self.encoder.events(epoch, part, asks, packed=True)
                self.ring.append(
                    first, last, payload, packed, len(part), now, asks, _lock_pairs(part)
                )
            self.last_event = batch[-1]
            for listener in self.on_batch:
                listener(batch)
            self._wake()
        if self._pending and (self._filling is None or self._filling.done()):
            self._filling = asyncio.get_running_loop().create_task(self._fill_gap())

    async def _fill_gap(self) -> None:
        """Read the missing revisions from the store's log."""
        try:
            events = await self._fetch(self.state.revision, FETCH_LIMIT)
        except Exception:
            _log.exception("could not read the event log to fill a gap; retrying")
            await asyncio.sleep(0.5)
            events = []
        self.publish(events)
        if not events and self._pending:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def rebase(self, state: ReplicatedState, reason: ResetReason) -> None:
        """Replace the state and start a new ring; every current stream must reset."""
        self.state = state
        self.ring = EventRing(self.ring.capacity)
        self._pending.clear()
        self._snapshots.clear()
        self.last_event = None
        self.generation += 1
        self.rebase_reason = reason
        for listener in self.on_rebase:
            listener(state)
        self._wake()

    def note_ahead(self, epoch: str, revision: int) -> None:
        """An agent applied (epoch, revision), beyond the hub's revision."""
        for listener in self.on_ahead:
            listener(epoch, revision)

    def wake(self) -> None:
        """Let every waiting stream look again now (e.g. a revision became awaited)."""
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _release(waiter)

    async def wait_beyond(self, seq: int, alarm: Alarm | None = None) -> None:
        """Return when a batch with sequence ≥ seq exists, on close, or when `alarm`
        rings (whichever comes first)."""
        if self.ring.next_seq > seq or self.closing:
            return
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        waiters.add(waiter)
        if alarm is not None:
            alarm.waiter = waiter
        try:
            await waiter
        finally:
            waiters.discard(waiter)  # O(1), whichever way it ended
            if alarm is not None:
                alarm.waiter = None

    def close(self) -> None:
        """Ask every stream to end with Reset(shutdown)."""
        self.closing = True
        self._wake()


class Alarm:
    """A stream's heartbeat timer, kept across its waits (`Hub.wait_beyond`).

    A timer per wait cost every stream a timer set and cancelled for every batch (3.5 µs
    of the server's CPU per stream per lock). A stream's heartbeat only ever moves later,
    so a timer already set for sooner is kept: it rings early at most once an interval,
    the stream finds its heartbeat not yet due and sets it again.
    """

    __slots__ = ("_due", "_handle", "waiter")

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.waiter: asyncio.Future[None] | None = None  # the wait it ends when it rings

    def set(self, delay: float) -> None:
        """Ring in `delay` seconds, or sooner if already set for sooner."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if self._handle is not None:
            if self._due <= due:
                return
            self._handle.cancel()
        self._due, self._handle = due, loop.call_at(due, self._ring)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _ring(self) -> None:
        self._handle = None
        if self.waiter is not None:
            _release(self.waiter)


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _holds(part: Sequence[Event], revision: int) -> bool:
    return part[0].revision <= revision <= part[-1].revision


def _lock_pairs(part: Sequence[Event]) -> frozenset[TargetPair]:
    locks = [event.resource for event in part if isinstance(event.resource, Lock)]
    return frozenset(pair for lock in locks for pair in lock.target.pairs())

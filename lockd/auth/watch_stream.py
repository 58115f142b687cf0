"""One WatchLocks stream, decided here and carried out by lockd.api (DESIGN §3).

`WatchStream.frames()` yields the serialised responses for one agent: a snapshot
(Begin/Chunk/End) or a resume from the log, then event batches from the shared ring,
heartbeats when nothing else went out for `heartbeat_interval`, and finally a Reset when
the stream must end. It never skips a revision: a cursor either delivers the next batch
or the stream ends with Reset. Once it has delivered a revision somebody waits for
(`awaited`, lockctl lock --wait), it sends an AckRequest for it, so the agent acks at once.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import timedelta

from lockd.auth.hub import Alarm, ReplicationHub, ResetReason, encode_within
from lockd.auth.ring import Overrun
from lockd.domain.errors import CompactedError
from lockd.domain.lock import TargetPair
from lockd.domain.ports import Clock, Store

SNAPSHOT_CHUNK = 500
CATCH_UP_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class WatchSettings:
    heartbeat_interval: timedelta = timedelta(seconds=5)
    # A stream whose next batch waited longer than this is a slow consumer.
    slow_consumer_after: timedelta = timedelta(seconds=30)
    # Snapshot bytes all streams together may still have to send: past it, a stream
    # needing a snapshot is reset (overloaded). Bytes, not a count of snapshots, because
    # a snapshot of 100 locks and one of 100,000 differ a thousandfold in cost.
    snapshot_bytes_in_flight: int = 256 << 20
    retry_after: timedelta = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Hello:
    agent_id: str
    epoch: str
    applied_revision: int
    packed_locks: bool = False  # the agent reads locks packed (lockd.domain.packed_form)


class SnapshotGate:
    """Admits snapshots by the bytes they still have to send, over all streams.

    A stream is admitted when its whole snapshot fits in what is left of `limit`, or
    when no snapshot is in flight (a snapshot larger than the budget still goes out, one
    at a time); its bytes are given back frame by frame as they are written.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def try_enter(self, size: int) -> bool:
        if self.in_flight and self.in_flight + size > self.limit:
            return False
        self.in_flight += size
        return True

    def leave(self, size: int) -> None:
        self.in_flight -= size


class WatchStream:
    def __init__(
        self,
        hub: ReplicationHub,
        store: Store,
        clock: Clock,
        settings: WatchSettings,
        gate: SnapshotGate,
        hello: Hello,
        on_batch_sent: Callable[[int], None] = lambda events: None,
        locked: Callable[[], str | None] = lambda: None,
        awaited: Callable[[], int] = lambda: 0,
        lock_targets: Collection[TargetPair] = (),
    ) -> None:
        """`locked`: the message of a lock in force on the agent, if any; asked when the
        stream starts following and after every batch putting a lock that names one of
        `lock_targets` (the agent's query targets) — no other batch can lock it out."""
        self._hub = hub
        self._store = store
        self._clock = clock
        self._settings = settings
        self._gate = gate
        self._hello = hello
        self._on_batch_sent = on_batch_sent
        self._locked = locked
        self._awaited = awaited
        self._lock_targets = frozenset(lock_targets)
        self._asked = 0  # the highest awaited revision this stream asked an ack for
        self.position = 0
        self.snapshotted = False
        self.reset_reason: ResetReason | None = None
        self._generation = hub.generation

    def _reset(
        self, reason: ResetReason, detail: str, retry_after: timedelta | None = None
    ) -> bytes:
        self.reset_reason = reason
        delay = retry_after if retry_after is not None else self._settings.retry_after
        return self._hub.encoder.reset(reason, delay, detail)

    async def frames(self) -> AsyncIterator[bytes]:
        """Everything this stream sends, ending with one Reset."""
        hub, hello = self._hub, self._hello
        self._generation = hub.generation
        seq: int | None = None
        if hello.epoch == hub.epoch and hello.applied_revision > hub.revision:
            hub.note_ahead(hello.epoch, hello.applied_revision)
            yield self._reset(
                ResetReason.AHEAD_OF_SERVER,
                f"agent applied revision {hello.applied_revision}, server is at {hub.revision}",
            )
            return
        if hello.epoch and hello.epoch == hub.epoch:
            self.position = hello.applied_revision
            try:
                async for frame in self._catch_up():
                    yield frame
                seq = hub.seq_after(self.position)
            except CompactedError:
                seq = None
        if seq is None:
            seq = hub.ring.next_seq  # state and ring position together: no await between
            frames = hub.snapshot_frames(self._encode_snapshot, hello.packed_locks)
            left = sum(map(len, frames))
            if not self._gate.try_enter(left):
                jitter = self._settings.retry_after * (1 + random.random())
                yield self._reset(ResetReason.OVERLOADED, "too many snapshots in flight", jitter)
                return
            self.position = hub.revision
            self.snapshotted = True
            try:
                for frame in frames:
                    yield frame  # resumed once the frame is written
                    left -= len(frame)
                    self._gate.leave(len(frame))
            finally:
                self._gate.leave(left)
        async for frame in self._follow(seq):
            yield frame

    async def _catch_up(self) -> AsyncIterator[bytes]:
        """Events from the store's log until the position meets a ring batch boundary."""
        hub = self._hub
        while hub.seq_after(self.position) is None and self.position < hub.revision:
            events = await self._store.events_since(self.position, CATCH_UP_LIMIT)
            # Only what the hub has published: later revisions arrive through the ring.
            events = [event for event in events if event.revision <= hub.revision]
            if not events:
                return
            encode = functools.partial(
                hub.encoder.events, hub.epoch, packed=self._hello.packed_locks
            )
            for part, frame in encode_within(events, encode):
                self.position = part[-1].revision
                yield frame
                self._on_batch_sent(len(part))

    def _encode_snapshot(self, packed: bool) -> list[bytes]:
        hub = self._hub
        resources = hub.state.resources()
        epoch, revision, count = hub.epoch, hub.revision, len(resources)
        frames = [hub.encoder.snapshot_begin(epoch, revision, count)]
        encode = functools.partial(hub.encoder.snapshot_chunk, packed=packed)
        for start in range(0, count, SNAPSHOT_CHUNK):
            chunk = resources[start : start + SNAPSHOT_CHUNK]
            frames.extend(frame for _, frame in encode_within(chunk, encode))
        frames.append(hub.encoder.snapshot_end(epoch, revision, count))
        return frames

    async def _follow(self, seq: int) -> AsyncIterator[bytes]:
        hub, settings = self._hub, self._settings
        interval = settings.heartbeat_interval.total_seconds()
        slow_after = settings.slow_consumer_after.total_seconds()
        following_since = self._clock.monotonic()
        # A heartbeat goes out at once when the stream starts caught up: after a resume it
        # is the agent's proof that its view is current (it would otherwise wait a full
        # interval in DEGRADED).
        last_sent = following_since - interval
        # A lock put since the agent was admitted reached it in the snapshot or catch-up.
        if (message := self._locked()) is not None:
            yield self._reset(ResetReason.LOCKED, message)
            return
        targets, packed = self._lock_targets, self._hello.packed_locks
        alarm = Alarm()
        try:
            while True:
                if hub.closing:
                    yield self._reset(ResetReason.SHUTDOWN, "auth server is shutting down")
                    return
                if hub.generation != self._generation:
                    yield self._reset(hub.rebase_reason, "the auth server reloaded its state")
                    return
                awaited = self._awaited()
                if awaited > self._asked and self.position >= awaited:
                    self._asked = awaited
                    yield hub.encoder.ack_request(hub.epoch, awaited)
                try:
                    batch = hub.ring.get(seq)
                except Overrun:
                    yield self._reset(
                        ResetReason.SLOW_CONSUMER, "stream fell behind the event ring"
                    )
                    return
                now = self._clock.monotonic()
                if batch is not None:
                    # Lag counts from when this stream could first send the batch: resuming
                    # into batches that went into the ring long ago is not being slow.
                    if now - max(batch.created, following_since) > slow_after:
                        yield self._reset(
                            ResetReason.SLOW_CONSUMER,
                            f"stream lagged more than {settings.slow_consumer_after}",
                        )
                        return
                    seq += 1
                    self.position = batch.last
                    if batch.ack_requested:  # the batch's frame asks for it: no AckRequest
                        self._asked = max(self._asked, batch.last)
                    last_sent = now
                    # Decided before the batch goes out (the agent's acks after it already
                    # count as those of a locked-out agent), sent after it: the batch that
                    # locks this agent goes first, its own view must see the lock to end its
                    # sessions. Then the stream ends.
                    message = None
                    if not targets.isdisjoint(batch.lock_pairs):
                        message = self._locked()
                    yield batch.packed_payload if packed else batch.payload
                    self._on_batch_sent(batch.count)
                    if message is not None:
                        yield self._reset(ResetReason.LOCKED, message)
                        return
                    continue
                wait = last_sent + interval - now
                if wait <= 0:
                    last_sent = now
                    yield hub.encoder.heartbeat(
                        hub.epoch,
                        self.position,
                        self._clock.now(),
                        hub.healthy,
                        settings.heartbeat_interval,
                    )
                    continue
                alarm.set(wait)
                await hub.wait_beyond(seq, alarm)
        finally:
            alarm.cancel()  # the stream ended: no timer outlives it

"""The shared fan-out ring: pre-serialised event batches, one sequence number each.

Every watch stream is a cursor (a sequence number) into the same ring, so an event
batch is serialised once whatever the number of streams. The ring is bounded; a cursor
that falls behind its oldest batch is *overrun* and its stream must be reset — a cursor
never skips a batch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from lockd.domain.lock import TargetPair


@dataclass(frozen=True, slots=True)
class Batch:
    """Contiguous revisions first..last, serialised once as `payload` and once as
    `packed_payload` (its locks packed, for agents that asked: WatchHello.packed_locks)."""

    seq: int
    first: int
    last: int
    payload: bytes
    packed_payload: bytes
    count: int
    created: float  # monotonic seconds, for the slow-consumer time bound
    # Somebody waited for a revision of this batch when it was encoded: its frame asks
    # the agents to ack it at once (no AckRequest frame needed after it).
    ack_requested: bool = False
    # The target pairs of the locks this batch puts: a stream whose agent matches none of
    # them need not ask whether the batch locked it out.
    lock_pairs: frozenset[TargetPair] = frozenset()


class Overrun(Exception):
    """The cursor's next batch has already left the ring."""


class EventRing:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("ring capacity must be at least 1")
        self._capacity = capacity
        self._batches: deque[Batch] = deque()
        self._next_seq = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended batch will get."""
        return self._next_seq

    def append(
        self,
        first: int,
        last: int,
        payload: bytes,
        packed_payload: bytes,
        count: int,
        now: float,
        ack_requested: bool = False,
        lock_pairs: frozenset[TargetPair] = frozenset(),
    ) -> Batch:
        if self._batches and first != self._batches[-1].last + 1:
            raise ValueError(f"batch {first}..{last} does not follow {self._batches[-1].last}")
        batch = Batch(
            self._next_seq,
            first,
            last,
            payload,
            packed_payload,
            count,
            now,
            ack_requested,
            lock_pairs,
        )
        self._batches.append(batch)
        self._next_seq += 1
        if len(self._batches) > self._capacity:
            self._batches.popleft()
        return batch

    def get(self, seq: int) -> Batch | None:
        """The batch with this sequence number; None if it is not written yet."""
        if seq >= self._next_seq:
            return None
        base = self._next_seq - len(self._batches)
        if seq < base:
            raise Overrun(f"batch {seq} left the ring (oldest kept: {base})")
        return self._batches[seq - base]

    def seq_after(self, revision: int) -> int | None:
        """The sequence number of the batch that starts at revision + 1.

        `next_seq` when `revision` is the last revision in the ring (or the ring is empty
        and the caller is caught up by other means); None when no batch boundary sits at
        `revision` inside the ring.
        """
        if not self._batches:
            return None
        if revision == self._batches[-1].last:
            return self._next_seq
        low, high = 0, len(self._batches) - 1
        while low <= high:
            middle = (low + high) // 2
            batch = self._batches[middle]
            if batch.first == revision + 1:
                return batch.seq
            if batch.first <= revision:
                low = middle + 1
            else:
                high = middle - 1
        return None

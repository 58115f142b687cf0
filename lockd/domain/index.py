"""Indexes keyed by `(field, value)` pairs, for matching without scans.

`PairIndex` is the shared shape: each entry is filed under its pairs, so insert and
remove cost is proportional to the entry's pairs, and a lookup touches only the buckets
of the pairs asked about. Two uses:

* `LockIndex` files locks under their target pairs and answers "which in-force lock does
  this identity hit at time t" from the identity's query targets.
* `lockd.domain.sessions.SessionRegistry` files live sessions under their query targets
  and answers the reverse question: "which of them does this new lock hit".
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from datetime import datetime
from typing import Generic, TypeVar, cast

from lockd.domain.lock import Lock, TargetPair

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PairIndex(Generic[K, V]):
    """Entries by key, each also filed under every one of its (field, value) pairs."""

    __slots__ = ("_buckets", "_entries")

    def __init__(self) -> None:
        self._entries: dict[K, tuple[tuple[TargetPair, ...], V]] = {}
        self._buckets: dict[TargetPair, dict[K, V]] = {}

    def put(self, key: K, pairs: Iterable[TargetPair], value: V) -> None:
        """Insert or replace the entry under `key`."""
        self.remove(key)
        filed = tuple(dict.fromkeys(pairs))
        self._entries[key] = (filed, value)
        for pair in filed:
            self._buckets.setdefault(pair, {})[key] = value

    def remove(self, key: K) -> V | None:
        """Remove and return the entry under `key`, if any."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        filed, value = entry
        for pair in filed:
            bucket = self._buckets[pair]
            del bucket[key]
            if not bucket:
                del self._buckets[pair]
        return value

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def bucket(self, pair: TargetPair) -> dict[K, V]:
        """Entries filed under `pair` (a read-only view by convention)."""
        return self._buckets.get(pair) or cast("dict[K, V]", _EMPTY)

    def keys_hit_by(self, pairs: Iterable[TargetPair]) -> set[K]:
        """Keys of entries filed under any of `pairs`."""
        hit: set[K] = set()
        for pair in pairs:
            hit.update(self._buckets.get(pair, ()))
        return hit

    def values(self) -> Iterator[V]:
        return (value for _, value in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


_EMPTY: dict[object, object] = {}


class LockIndex:
    """Locks by name, filed under their target pairs."""

    __slots__ = ("_index",)

    def __init__(self, locks: Iterable[Lock] = ()) -> None:
        self._index: PairIndex[str, Lock] = PairIndex()
        for lock in locks:
            self.put(lock)

    def put(self, lock: Lock) -> None:
        self._index.put(lock.name, lock.target.pairs(), lock)

    def remove(self, name: str) -> Lock | None:
        return self._index.remove(name)

    def get(self, name: str) -> Lock | None:
        return self._index.get(name)

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[Lock]:
        return self._index.values()

    def first_hit(self, query_targets: Iterable[TargetPair], now: datetime) -> Lock | None:
        """Some lock in force at `now` that a query target matches, or None."""
        for pair in query_targets:
            for lock in self._index.bucket(pair).values():
                if lock.in_force(now):
                    return lock
        return None

    def hits(self, query_targets: Iterable[TargetPair], now: datetime) -> list[Lock]:
        """Every lock in force at `now` that a query target matches, sorted by name."""
        found = {
            lock.name: lock
            for pair in query_targets
            for lock in self._index.bucket(pair).values()
            if lock.in_force(now)
        }
        return [found[name] for name in sorted(found)]

    def in_force(self, now: datetime) -> list[Lock]:
        return [lock for lock in self._index.values() if lock.in_force(now)]

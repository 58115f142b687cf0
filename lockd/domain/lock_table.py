"""The agent's locks, stored compactly and indexed by their target pairs.

An agent holds every lock of the cluster (100k and more), so a lock here is not a
`Lock` object graph (~1 KB with its target, strings, timestamps and index entries) but
one `bytes` record — its message, creator, times and target pairs joined by NUL, in
UTF-8 — filed under its name, and its name filed under a hash of each of its
`(field, value)` pairs (~270 bytes a lock in all, dict slots included). A `Lock`
is decoded from the record only when somebody needs one: a lookup that hits, a read
by name, a save. `LockTable` is a `MutableMapping[str, Lock]` by name (it is the
agent's `ReplicatedState.locks`) and answers the index questions of
`lockd.domain.index.LockIndex` (which the auth server keeps for its own locks).

NUL cannot occur in a valid lock's name, target values or message (the text rule,
lockd.domain.lock); a lock whose creator contains one, or whose times are not in UTC,
is kept as its `Lock` object instead — rare, and always exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from lockd.domain.errors import InvariantError
from lockd.domain.lock import TARGET_FIELDS, Lock, LockTarget, TargetPair

SEPARATOR = "\x00"
# One character per target field in records and index keys (TARGET_FIELDS order).
FIELD_CODES = {field: chr(ord("a") + index) for index, field in enumerate(TARGET_FIELDS)}
CODE_FIELDS = {code: field for field, code in FIELD_CODES.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Index keys below 2**60 are 32-byte ints (a full 64-bit hash takes 48 bytes).
_KEY_MASK = (1 << 60) - 1

Record = bytes | Lock


def _stamp(moment: datetime | None) -> str | None:
    """Microseconds since 1970 in hex ("" for None); None when not exactly UTC."""
    if moment is None:
        return ""
    if moment.tzinfo is not UTC:
        return None
    return format((moment - _EPOCH) // _MICROSECOND, "x")


def _moment(text: str) -> datetime | None:
    return None if not text else _EPOCH + timedelta(microseconds=int(text, 16))


def encode(lock: Lock, pairs: tuple[TargetPair, ...] | None = None) -> Record:
    """The compact record of `lock` (the lock itself when it cannot be one exactly);
    `pairs` are its target's pairs when the caller has them already."""
    expires, created = _stamp(lock.expires), _stamp(lock.created_at)
    if expires is None or created is None or SEPARATOR in lock.created_by:
        return lock
    pairs = lock.target.pairs() if pairs is None else pairs
    return _record(lock.message, lock.created_by, expires, created, pairs)


def _record(
    message: str, created_by: str, expires: str, created: str, pairs: Iterable[TargetPair]
) -> bytes:
    parts = [message, created_by, expires, created]
    for field, value in pairs:
        parts.append(FIELD_CODES[field])
        parts.append(value)
    return SEPARATOR.join(parts).encode()


class PackedLock(NamedTuple):
    """A lock in the table's own form, made straight from the wire (lockd.wire.convert).

    An agent files it without building a `Lock`, its `LockTarget` and its datetimes
    (most of what a lock cost it per event); `unpack` builds the `Lock` for the few
    who need one — a session it hits, a journal record, a sidecar's frame. A named
    tuple: immutable, and built in a third of a frozen dataclass's time.
    """

    name: str
    record: bytes
    pairs: tuple[TargetPair, ...]
    expires: datetime | None
    created_us: int | None  # microseconds since 1970 (the propagation histogram)

    def unpack(self) -> Lock:
        return decode(self.name, self.record)


class PackedRun(NamedTuple):
    """Packed locks column by column: a snapshot chunk's, as read off the wire
    (lockd.domain.packed_form.from_packed_forms). `LockTable.put_run` files them in one
    loop, without a `PackedLock` tuple each — a cold start files every lock of the
    cluster, and that tuple was a fifth of what each one cost."""

    names: list[str]
    records: list[bytes]
    pairs: list[tuple[TargetPair, ...]]
    expires: list[datetime | None]
    created_us: list[int | None]

    def append(self, lock: PackedLock) -> None:
        self.names.append(lock.name)
        self.records.append(lock.record)
        self.pairs.append(lock.pairs)
        self.expires.append(lock.expires)
        self.created_us.append(lock.created_us)

    def lock(self, position: int) -> PackedLock:
        return PackedLock(
            self.names[position],
            self.records[position],
            self.pairs[position],
            self.expires[position],
            self.created_us[position],
        )

    def locks(self) -> list[PackedLock]:
        """Each lock of the run, in order."""
        columns = zip(
            self.names, self.records, self.pairs, self.expires, self.created_us, strict=True
        )
        return list(itertools.starmap(PackedLock, columns))


def empty_run() -> PackedRun:
    return PackedRun([], [], [], [], [])


def pack(
    name: str,
    pairs: tuple[TargetPair, ...],
    message: str,
    expires_us: int | None,
    created_us: int | None,
    created_by: str,
) -> PackedLock | None:
    """The lock of these parts (already validated), times in microseconds since 1970;
    None when it has no record (a creator containing NUL: build a `Lock`)."""
    if SEPARATOR in created_by:
        return None
    record = _record(
        message,
        created_by,
        "" if expires_us is None else format(expires_us, "x"),
        "" if created_us is None else format(created_us, "x"),
        pairs,
    )
    expires = None if expires_us is None else _EPOCH + timedelta(microseconds=expires_us)
    return PackedLock(name, record, pairs, expires, created_us)


def decode(name: str, record: Record) -> Lock:
    """The lock `encode` made `record` of."""
    if isinstance(record, Lock):
        return record
    message, created_by, expires, created, *pairs = record.decode().split(SEPARATOR)
    target = LockTarget(**{CODE_FIELDS[pairs[i]]: pairs[i + 1] for i in range(0, len(pairs), 2)})
    return Lock(name, target, message, _moment(expires), _moment(created), created_by)


def _key(code: str, value: str) -> int:
    """The index key of a pair: a hash of it, which is a smaller object than the pair
    (or its text); two pairs may share one, so lookups check the lock's target."""
    return hash(code + value) & _KEY_MASK


def _keys(record: Record) -> list[int]:
    """The index keys of a record, one per target pair of the lock it was made of."""
    if isinstance(record, Lock):
        return [_key(FIELD_CODES[field], value) for field, value in record.target.pairs()]
    pairs = record.decode().split(SEPARATOR)[4:]
    return [_key(pairs[i], pairs[i + 1]) for i in range(0, len(pairs), 2)]


class LockTable(MutableMapping[str, Lock]):
    """Locks by name, each also filed under its target pairs, compactly."""

    __slots__ = ("_expiring", "_index", "_records")

    def __init__(self, locks: Iterable[Lock] = ()) -> None:
        self._records: dict[str, Record] = {}
        # Index key → the one name filed there, or the set of them.
        self._index: dict[int, str | set[str]] = {}
        self._expiring: dict[str, datetime] = {}  # the few locks that expire
        for lock in locks:
            self.put(lock)

    # -- the mapping -----------------------------------------------------------------

    def __getitem__(self, name: str) -> Lock:
        return decode(name, self._records[name])

    def __setitem__(self, name: str, lock: Lock) -> None:
        if name != lock.name:
            raise InvariantError(f"lock {lock.name!r} filed as {name!r}")
        self.put(lock)

    def __delitem__(self, name: str) -> None:
        if self.remove(name) is None:
            raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def pop(self, name: str, *default: Lock | None) -> Lock | None:  # type: ignore[override]
        """Remove `name`; its lock (decoded), or `default` when there was none."""
        record = self.remove(name)
        if record is None:
            if default:
                return default[0]
            raise KeyError(name)
        return decode(name, record)

    def clear(self) -> None:
        self._records.clear()
        self._index.clear()
        self._expiring.clear()

    # -- changes ---------------------------------------------------------------------

    def put(self, lock: Lock | PackedLock) -> bool:
        """Insert or replace `lock`; whether anything changed (an equal lock: no)."""
        if isinstance(lock, PackedLock):
            return self._file(lock.name, lock.record, lock.pairs, lock.expires)
        pairs = lock.target.pairs()
        return self._file(lock.name, encode(lock, pairs), pairs, lock.expires)

    def put_run(self, run: PackedRun) -> list[int]:
        """`put` each lock of `run`, in order; the positions of those that changed
        anything."""
        file = self._file
        return [
            position
            for position, (name, record, pairs, expires) in enumerate(
                zip(run.names, run.records, run.pairs, run.expires, strict=True)
            )
            if file(name, record, pairs, expires)
        ]

    def _file(
        self, name: str, record: Record, pairs: tuple[TargetPair, ...], expires: datetime | None
    ) -> bool:
        old = self._records.get(name)
        if old is not None:
            if old == record:
                return False
            self.remove(name)
        self._records[name] = record
        index = self._index
        for field, value in pairs:
            key = hash(FIELD_CODES[field] + value) & _KEY_MASK  # `_key`, written out: per lock
            filed = index.get(key)
            if filed is None:
                index[key] = name
            elif isinstance(filed, set):
                filed.add(name)
            elif filed != name:
                index[key] = {filed, name}
        if expires is not None:
            self._expiring[name] = expires
        return True

    def remove(self, name: str) -> Record | None:
        """Remove and return the record under `name`, if any."""
        record = self._records.pop(name, None)
        if record is None:
            return None
        index = self._index
        for key in _keys(record):
            filed = index.get(key)
            if isinstance(filed, set):
                filed.discard(name)
                if len(filed) == 1:
                    index[key] = next(iter(filed))
            elif filed == name:
                del index[key]
        self._expiring.pop(name, None)
        return record

    def copy(self) -> LockTable:
        """An independent table with the same locks (records are shared: immutable)."""
        twin = LockTable()
        twin._records = dict(self._records)
        twin._index = {k: set(v) if isinstance(v, set) else v for k, v in self._index.items()}
        twin._expiring = dict(self._expiring)
        return twin

    def record(self, name: str) -> Record | None:
        """The stored record (compare two tables' locks without decoding them)."""
        return self._records.get(name)

    # -- lookups ---------------------------------------------------------------------

    def _matching(self, pair: TargetPair, now: datetime) -> Iterator[Lock]:
        """The locks in force at `now` whose target has `pair`."""
        field, value = pair
        filed = self._index.get(_key(FIELD_CODES[field], value))
        if filed is None:
            return
        expiring = self._expiring
        for name in (filed,) if isinstance(filed, str) else sorted(filed):
            expires = expiring.get(name)
            if expires is not None and not now < expires:
                continue
            lock = decode(name, self._records[name])
            if getattr(lock.target, field) == value:  # not another pair of the same key
                yield lock

    def first_hit(self, query_targets: Iterable[TargetPair], now: datetime) -> Lock | None:
        """Some lock in force at `now` that a query target matches, or None."""
        for pair in query_targets:
            for lock in self._matching(pair, now):
                return lock
        return None

    def hits(self, query_targets: Iterable[TargetPair], now: datetime) -> list[Lock]:
        """Every lock in force at `now` that a query target matches, sorted by name."""
        found = {lock.name: lock for pair in query_targets for lock in self._matching(pair, now)}
        return [found[name] for name in sorted(found)]

    def in_force(self, now: datetime) -> list[Lock]:
        """Every lock in force at `now` (decodes them all: for listings)."""
        return [
            lock
            for lock in map(decode, self._records, self._records.values())
            if lock.in_force(now)
        ]

    def count_in_force(self, now: datetime) -> int:
        """How many locks are in force at `now`, without decoding any."""
        expired = sum(1 for expires in self._expiring.values() if not now < expires)
        return len(self._records) - expired

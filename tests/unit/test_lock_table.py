"""LockTable, the agent's compact locks: exact round trips, and the same answers as
LockIndex (the auth server's) and a scan of every lock — also when index keys collide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockd.domain import lock_table
from lockd.domain.errors import InvariantError
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.lock_table import LockTable, decode, empty_run, encode
from lockd.domain.packed_form import from_packed_form, packed_form
from tests.unit.strategies import T0
from tests.unit.strategies import locks as valid_locks
from tests.unit.test_index import (
    LOCK_NAMES,
    Put,
    Remove,
    brute_force_hits,
    identities,
    lock_values,
    operations,
    replay,
    times,
)


def table_replay(ops: list[Put | Remove]) -> LockTable:
    table = LockTable()
    for op in ops:
        if isinstance(op, Put):
            table.put(op.lock)
        else:
            table.remove(op.name)
    return table


@given(valid_locks)
def test_a_lock_comes_back_from_its_record_exactly(lock: Lock) -> None:
    """Any valid lock — any text, times in any zone — decodes to an equal lock with the
    same time zones (a record, or the lock itself where a record could not be exact)."""
    back = decode(lock.name, encode(lock))
    assert back == lock
    assert (back.expires, back.created_at) == (lock.expires, lock.created_at)
    for mine, theirs in ((back.expires, lock.expires), (back.created_at, lock.created_at)):
        assert mine is None or mine.utcoffset() == theirs.utcoffset()  # type: ignore[union-attr]


def test_utc_locks_are_records_and_others_stay_objects() -> None:
    """The common case (UTC times, plain creator) is a bytes record; a time in another
    zone or a NUL in the creator keeps the Lock itself."""
    plain = Lock("l", LockTarget(user="ü", role="r"), "msg", T0, T0, "admin")
    assert isinstance(encode(plain), bytes)
    zoned = Lock("l", LockTarget(user="u"), created_at=T0.astimezone(timezone(timedelta(hours=2))))
    assert encode(zoned) is zoned
    odd = Lock("l", LockTarget(user="u"), created_by="a\x00b")
    assert encode(odd) is odd


@pytest.mark.parametrize("colliding", [False, True], ids=["hashed", "all-keys-collide"])
@settings(max_examples=60)
@given(ops=operations, people=st.lists(identities, min_size=1, max_size=4), now=times)
def test_lookups_agree_with_lock_index_and_a_scan(
    ops: list[Put | Remove], people: list[Identity], now: datetime, colliding: bool
) -> None:
    """After any put/replace/remove sequence, first_hit, hits, in_force and
    count_in_force equal a scan over the surviving locks; with every pair filed under
    one key, lookups still return only locks that carry the pair asked about."""
    with pytest.MonkeyPatch.context() as patch:
        if colliding:
            patch.setattr(lock_table, "_KEY_MASK", 0)
        table = table_replay(ops)
        index, model = replay(ops)
        for identity in people:
            query = identity.query_targets()
            expected = brute_force_hits(model, query, now)
            assert table.hits(query, now) == expected == index.hits(query, now)
            first = table.first_hit(query, now)
            assert first in expected if expected else first is None
        in_force = sorted(lock.name for lock in model.values() if lock.in_force(now))
        assert sorted(lock.name for lock in table.in_force(now)) == in_force
        assert table.count_in_force(now) == len(in_force)
        assert dict(table) == model
        for name in LOCK_NAMES:
            assert table.get(name) == model.get(name)


def test_the_table_is_a_mapping_by_name() -> None:
    """Set, get, pop and delete by name; a lock filed under another name is refused;
    put says whether anything changed."""
    table = LockTable()
    alice = Lock("a", LockTarget(user="alice"), created_at=datetime(2026, 1, 1, tzinfo=UTC))
    table["a"] = alice
    assert table.put(alice) is False
    assert table.put(Lock("a", LockTarget(user="alice"), "new text")) is True
    with pytest.raises(InvariantError):
        table["b"] = alice
    assert table.pop("a") == Lock("a", LockTarget(user="alice"), "new text")
    assert table.pop("a", None) is None
    with pytest.raises(KeyError):
        del table["a"]
    assert len(table) == 0
    assert table.first_hit((("user", "alice"),), T0) is None


def test_a_copy_does_not_follow_later_changes() -> None:
    """copy() shares nothing that changes: puts and removes on either side stay there."""
    shared = [Lock(f"l{i}", LockTarget(role="dev")) for i in range(3)]
    table = LockTable(shared)
    twin = table.copy()
    table.remove("l0")
    twin.put(Lock("l9", LockTarget(role="dev")))
    assert sorted(table) == ["l1", "l2"]
    assert sorted(twin) == ["l0", "l1", "l2", "l9"]
    assert [lock.name for lock in twin.hits((("role", "dev"),), T0)] == ["l0", "l1", "l2", "l9"]
    assert [lock.name for lock in table.hits((("role", "dev"),), T0)] == ["l1", "l2"]


@given(
    before=st.lists(lock_values, max_size=5),
    filed=st.lists(lock_values, max_size=8),
    people=st.lists(identities, min_size=1, max_size=3),
    now=times,
)
def test_a_run_files_its_locks_as_putting_each_in_turn_would(
    before: list[Lock], filed: list[Lock], people: list[Identity], now: datetime
) -> None:
    """put_run of packed locks (a snapshot chunk's) leaves the table as `put` of each
    in turn does — records, index and expiry — and gives the positions of those that
    changed something: a lock equal to the one already filed under its name is not."""
    packed = [from_packed_form(data) for lock in filed if (data := packed_form(lock)) is not None]
    packed += packed[:2]  # repeated: by then equal to what is filed
    one_by_one, at_once = LockTable(before), LockTable(before)
    changed = [position for position, lock in enumerate(packed) if one_by_one.put(lock)]
    run = empty_run()
    for lock in packed:
        run.append(lock)
    assert run.locks() == packed
    assert at_once.put_run(run) == changed
    assert {name: at_once.record(name) for name in at_once} == {
        name: one_by_one.record(name) for name in one_by_one
    }
    assert at_once.in_force(now) == one_by_one.in_force(now)
    assert at_once.count_in_force(now) == one_by_one.count_in_force(now)
    for identity in people:
        query = identity.query_targets()
        assert at_once.hits(query, now) == one_by_one.hits(query, now)

"""Contract: snapshots, exact round trips and concurrent use, on every adapter."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode, Snapshot, Store
from lockd.domain.resources import Kind
from tests.contract.helpers import T0, all_events, at, cap, lock, replayed, role, snapshot_state


async def test_snapshot_lists_preference_then_roles_then_locks_by_name(store: Store) -> None:
    """The preference comes first (agents need it first), then roles and locks, each by name."""
    await store.put(lock("b"), PutMode.CREATE, T0)
    await store.put(role("z"), PutMode.CREATE, T0)
    await store.put(lock("a"), PutMode.CREATE, T0)
    await store.put(cap(), PutMode.UPSERT, T0)
    await store.put(role("m"), PutMode.CREATE, T0)
    snapshot = await store.snapshot()
    assert snapshot.revision == 5
    assert snapshot.resources == (cap(), role("m"), role("z"), lock("a"), lock("b"))


async def test_snapshot_omits_the_preference_until_it_is_set(store: Store) -> None:
    """An unset preference is absent from the snapshot; the default applies."""
    await store.put(lock("a"), PutMode.CREATE, T0)
    assert (await store.snapshot()).resources == (lock("a"),)
    assert (await snapshot_state(store)).cluster_auth_preference.locking_mode is (
        LockingMode.BEST_EFFORT
    )


async def test_snapshot_equals_a_replay_of_the_log(store: Store) -> None:
    """Folding every event from revision 0 builds exactly the snapshot's state."""
    await store.put(cap(LockingMode.STRICT), PutMode.UPSERT, T0)
    await store.put(role("dev", LockingMode.STRICT), PutMode.CREATE, T0)
    await store.put(role("ops"), PutMode.CREATE, T0)
    for i in range(6):
        await store.put(lock(f"l{i}", expires=at(i)), PutMode.CREATE, T0)
    await store.put(lock("l5", message="changed"), PutMode.UPDATE, at(1))
    await store.delete(Kind.ROLE, "ops", at(1))
    await store.expire_due(at(2))
    replay, snapshot = await replayed(store), await snapshot_state(store)
    assert (replay.revision, replay.locks, replay.roles) == (
        snapshot.revision,
        snapshot.locks,
        snapshot.roles,
    )
    assert replay.cluster_auth_preference == snapshot.cluster_auth_preference == cap()


async def test_datetimes_round_trip_exactly(store: Store) -> None:
    """Times keep their microseconds and come back timezone-aware, as the same instants."""
    expires = datetime(2031, 2, 3, 4, 5, 6, 999999, tzinfo=UTC)
    created = datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    stored = Lock("t", LockTarget(user="u"), "m", expires, created, "admin")
    event_time = datetime(2024, 1, 1, 0, 0, 0, 500001, tzinfo=UTC)
    await store.put(stored, PutMode.CREATE, event_time)
    (back,) = (await store.snapshot()).resources
    assert back == stored
    assert isinstance(back, Lock)
    assert back.expires is not None
    assert back.created_at is not None
    assert back.expires.utcoffset() == back.created_at.utcoffset() == timedelta(0)
    (event,) = await all_events(store)
    assert event.time == event_time
    assert event.time.utcoffset() == timedelta(0)
    assert event.resource == stored


async def test_times_in_other_zones_are_kept_as_the_same_instant(store: Store) -> None:
    """A non-UTC `expires` or `now` means the same instant; expiry compares instants."""
    plus_two = timezone(timedelta(hours=2))
    expires = datetime(2024, 5, 1, 14, 0, 10, tzinfo=plus_two)  # 12:00:10 UTC
    await store.put(lock("z", expires=expires), PutMode.CREATE, T0.astimezone(plus_two))
    (back,) = (await store.snapshot()).resources
    assert isinstance(back, Lock)
    assert back.expires == expires
    assert await store.expire_due(datetime(2024, 5, 1, 12, 0, 9, tzinfo=UTC)) == []
    assert len(await store.expire_due(datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC))) == 1


async def test_concurrent_puts_get_distinct_gapless_revisions(store: Store) -> None:
    """Puts racing on one event loop still commit one by one: revisions 1..n, no repeats."""
    committed = await asyncio.gather(
        *(store.put(lock(f"l{i:02}"), PutMode.CREATE, T0) for i in range(40))
    )
    assert sorted(c.event.revision for c in committed) == list(range(1, 41))
    assert [event.revision for event in await all_events(store)] == list(range(1, 41))


async def test_snapshots_taken_during_writes_are_consistent(store: Store) -> None:
    """Each snapshot holds exactly the locks committed up to its own revision."""
    writes = [store.put(lock(f"l{i:02}"), PutMode.CREATE, T0) for i in range(30)]
    reads = [store.snapshot() for _ in range(10)]
    results = await asyncio.gather(*writes, *reads)
    snapshots = [result for result in results if isinstance(result, Snapshot)]
    log = await all_events(store)
    for snapshot in snapshots:
        committed = {event.name for event in log if event.revision <= snapshot.revision}
        assert {resource.name for resource in snapshot.resources} == committed

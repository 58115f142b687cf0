"""Contract: expire_due commits ordered EXPIRE events for due locks, on every adapter."""

from __future__ import annotations

from lockd.domain.events import EventType
from lockd.domain.ports import PutMode, Store
from lockd.domain.resources import Kind
from tests.contract.helpers import T0, all_events, at, lock, replayed, role, snapshot_state


async def test_expire_due_returns_nothing_when_no_lock_is_due(store: Store) -> None:
    """Locks that expire later, or never, stay; no event is committed."""
    await store.put(lock("later", expires=at(60)), PutMode.CREATE, T0)
    await store.put(lock("never"), PutMode.CREATE, T0)
    await store.put(role("dev"), PutMode.CREATE, T0)
    assert await store.expire_due(at(59)) == []
    assert (await store.snapshot()).revision == 3


async def test_a_lock_expires_at_exactly_its_expires(store: Store) -> None:
    """`expires <= now` is due: at exactly `expires` the lock is no longer in force."""
    await store.put(lock("a", expires=at(10)), PutMode.CREATE, T0)
    events = await store.expire_due(at(10))
    assert [(event.type, event.kind, event.name) for event in events] == [
        (EventType.EXPIRE, Kind.LOCK, "a")
    ]
    assert (await store.snapshot()).resources == ()


async def test_expire_events_carry_the_reaper_time_and_no_resource(store: Store) -> None:
    """An EXPIRE event's time is the `now` it was committed at; it names the lock only."""
    await store.put(lock("a", expires=at(10)), PutMode.CREATE, T0)
    (event,) = await store.expire_due(at(12))
    assert (event.revision, event.time, event.resource) == (2, at(12), None)
    assert (await all_events(store))[-1] == event


async def test_expire_events_follow_earlier_revisions_in_expires_then_name_order(
    store: Store,
) -> None:
    """Due locks expire in (expires, name) order, after every earlier revision, in one batch."""
    await store.put(lock("c", expires=at(5)), PutMode.CREATE, T0)
    await store.put(lock("b", expires=at(3)), PutMode.CREATE, T0)
    await store.put(lock("a", expires=at(5)), PutMode.CREATE, T0)
    await store.put(lock("d", expires=at(100)), PutMode.CREATE, T0)
    await store.put(role("dev"), PutMode.CREATE, at(1))
    events = await store.expire_due(at(6))
    assert [(event.revision, event.name) for event in events] == [(6, "b"), (7, "a"), (8, "c")]
    assert [event.revision for event in await all_events(store)] == list(range(1, 9))
    assert (await store.snapshot()).resources == (role("dev"), lock("d", expires=at(100)))


async def test_a_lock_upserted_to_a_later_expiry_is_not_expired_early(store: Store) -> None:
    """Moving `expires` later moves the expiry: the old time no longer expires the lock."""
    await store.put(lock("a", expires=at(5)), PutMode.CREATE, T0)
    await store.put(lock("a", expires=at(50)), PutMode.UPSERT, at(1))
    assert await store.expire_due(at(10)) == []
    assert [event.name for event in await store.expire_due(at(50))] == ["a"]


async def test_a_lock_upserted_to_never_expire_stays(store: Store) -> None:
    """Dropping `expires` from a lock means it never expires."""
    await store.put(lock("a", expires=at(5)), PutMode.CREATE, T0)
    await store.put(lock("a"), PutMode.UPDATE, at(1))
    assert await store.expire_due(at(10_000)) == []
    assert (await store.snapshot()).resources == (lock("a"),)


async def test_a_lock_upserted_to_an_earlier_expiry_expires_once(store: Store) -> None:
    """Moving `expires` earlier expires the lock at the new time, and only once."""
    await store.put(lock("a", expires=at(50)), PutMode.CREATE, T0)
    await store.put(lock("a", expires=at(5)), PutMode.UPSERT, at(1))
    assert [event.name for event in await store.expire_due(at(5))] == ["a"]
    assert await store.expire_due(at(100)) == []


async def test_a_deleted_lock_is_not_expired(store: Store) -> None:
    """A lock deleted before its expiry produces a DELETE and no EXPIRE."""
    await store.put(lock("a", expires=at(5)), PutMode.CREATE, T0)
    await store.delete(Kind.LOCK, "a", at(1))
    assert await store.expire_due(at(10)) == []
    assert [event.type for event in await all_events(store)] == [EventType.PUT, EventType.DELETE]


async def test_a_lock_recreated_after_delete_expires_on_its_new_terms(store: Store) -> None:
    """Delete then re-create with another expiry: only the new expiry counts, once."""
    await store.put(lock("a", expires=at(5)), PutMode.CREATE, T0)
    await store.delete(Kind.LOCK, "a", at(1))
    await store.put(lock("a", expires=at(20)), PutMode.CREATE, at(2))
    assert await store.expire_due(at(10)) == []
    assert len(await store.expire_due(at(20))) == 1
    await store.put(lock("a", expires=at(30)), PutMode.CREATE, at(21))
    await store.delete(Kind.LOCK, "a", at(22))
    await store.put(lock("a", expires=at(30)), PutMode.CREATE, at(23))
    assert len(await store.expire_due(at(40))) == 1
    assert await store.expire_due(at(40)) == []


async def test_expired_locks_leave_snapshot_and_replay_alike(store: Store) -> None:
    """After expiry, the snapshot and a replay of the log hold the same locks."""
    for i in range(10):
        await store.put(lock(f"l{i}", expires=at(i)), PutMode.CREATE, T0)
    await store.expire_due(at(4.5))
    replay, snapshot = await replayed(store), await snapshot_state(store)
    assert sorted(snapshot.locks) == [f"l{i}" for i in range(5, 10)]
    assert replay.locks == snapshot.locks
    assert replay.revision == snapshot.revision == 15

"""Contract: reading the event log (events_since) and compacting it, on every adapter."""

from __future__ import annotations

from datetime import timedelta

import pytest

from lockd.domain.errors import CompactedError
from lockd.domain.ports import PutMode, Store
from tests.contract.conftest import StoreOpener
from tests.contract.helpers import T0, all_events, at, lock

MINUTE = timedelta(minutes=1)


async def _put_locks(store: Store, count: int, *, seconds_apart: float = 0) -> None:
    for i in range(count):
        await store.put(lock(f"l{i:03}"), PutMode.CREATE, at(i * seconds_apart))


async def test_events_since_returns_later_events_in_ascending_order(store: Store) -> None:
    """events_since(r) starts right after r and ascends."""
    await _put_locks(store, 5)
    events = await store.events_since(2, 100)
    assert [event.revision for event in events] == [3, 4, 5]
    assert [event.name for event in events] == ["l002", "l003", "l004"]


async def test_events_since_returns_at_most_limit_events(store: Store) -> None:
    """`limit` caps a page; the caller pages on from the last revision it got."""
    await _put_locks(store, 5)
    assert [event.revision for event in await store.events_since(0, 2)] == [1, 2]
    assert [event.revision for event in await store.events_since(2, 2)] == [3, 4]
    assert [event.revision for event in await store.events_since(4, 2)] == [5]


@pytest.mark.parametrize("after", [3, 4, 1000])
async def test_events_since_is_empty_when_caught_up(store: Store, after: int) -> None:
    """At or beyond the current revision there is nothing to send, not an error."""
    await _put_locks(store, 3)
    assert await store.events_since(after, 10) == []


@pytest.mark.parametrize(("revision", "limit"), [(-1, 10), (0, 0), (0, -5)])
async def test_events_since_refuses_nonsense_arguments(
    store: Store, revision: int, limit: int
) -> None:
    """A negative revision or a limit below 1 is a caller bug (ValueError)."""
    with pytest.raises(ValueError, match="must"):
        await store.events_since(revision, limit)


async def test_events_since_raises_compacted_for_revisions_compacted_away(
    open_store: StoreOpener,
) -> None:
    """Once events after r are gone, events_since(r) raises CompactedError; later ones serve."""
    store = await open_store(retention_age=timedelta(0), retention_count=2)
    await _put_locks(store, 5)
    assert await store.compact(at(60)) == 3
    for gone in (0, 1, 2):
        with pytest.raises(CompactedError, match=rf"revision {gone} is older than"):
            await store.events_since(gone, 10)
    assert [event.revision for event in await store.events_since(3, 10)] == [4, 5]
    assert await store.events_since(5, 10) == []


async def test_compaction_keeps_events_younger_than_the_retention_age(
    open_store: StoreOpener,
) -> None:
    """With no count bound, only events older than the age bound are dropped."""
    store = await open_store(retention_age=5 * MINUTE, retention_count=0)
    await _put_locks(store, 4, seconds_apart=60)  # at 0, 1, 2, 3 minutes
    # At 7 min the cutoff is 2 min: the events at 0 and 1 min are older than it.
    assert await store.compact(T0 + 7 * MINUTE) == 2
    assert [event.revision for event in await store.events_since(2, 10)] == [3, 4]
    # Exactly at the age bound (2 min old + 5 min = now) an event is kept.
    assert await store.compact(T0 + 7 * MINUTE) == 0


async def test_compaction_keeps_the_newest_retention_count_events(open_store: StoreOpener) -> None:
    """With no age bound, the newest `retention_count` events always stay."""
    store = await open_store(retention_age=timedelta(0), retention_count=3)
    await _put_locks(store, 5)
    assert await store.compact(at(3600)) == 2
    assert [event.revision for event in await store.events_since(2, 10)] == [3, 4, 5]
    assert await store.compact(at(3600)) == 0


async def test_compaction_drops_only_events_beyond_both_bounds(open_store: StoreOpener) -> None:
    """An event goes only when it is both older than the age and beyond the count bound."""
    store = await open_store(retention_age=5 * MINUTE, retention_count=2)
    await _put_locks(store, 6, seconds_apart=60)  # at 0..5 minutes, revisions 1..6
    # At 6 min only the event at 0 min is old enough, though 4 are beyond the count.
    assert await store.compact(T0 + 6 * MINUTE) == 1
    # Much later all are old, but the newest two stay.
    assert await store.compact(T0 + 60 * MINUTE) == 3
    assert [event.revision for event in await store.events_since(4, 100)] == [5, 6]


async def test_compaction_drops_only_a_prefix_when_the_clock_went_back(
    open_store: StoreOpener,
) -> None:
    """The log stays contiguous: an old event after a young one is kept with it."""
    store = await open_store(retention_age=5 * MINUTE, retention_count=0)
    await store.put(lock("old"), PutMode.CREATE, T0)
    await store.put(lock("young"), PutMode.CREATE, T0 + 10 * MINUTE)
    await store.put(lock("back"), PutMode.CREATE, T0)  # wall clock stepped back
    assert await store.compact(T0 + 11 * MINUTE) == 1
    assert [event.name for event in await store.events_since(1, 10)] == ["young", "back"]


async def test_compacting_everything_keeps_the_revision_going(open_store: StoreOpener) -> None:
    """An empty log still knows its revision: caught-up readers get [], the next put +1."""
    store = await open_store(retention_age=timedelta(0), retention_count=0)
    await _put_locks(store, 3)
    assert await store.compact(at(1)) == 3
    assert (await store.snapshot()).revision == 3
    assert await store.events_since(3, 10) == []
    with pytest.raises(CompactedError):
        await store.events_since(2, 10)
    assert (await store.put(lock("next"), PutMode.CREATE, at(2))).event.revision == 4
    assert [event.revision for event in await store.events_since(3, 10)] == [4]


async def test_default_retention_keeps_a_short_history(store: Store) -> None:
    """With the port's defaults (5 min, 100k events) a small young log is never compacted."""
    await _put_locks(store, 3)
    assert await store.compact(at(3600)) == 0
    assert len(await all_events(store)) == 3

"""What only the memory adapter promises: its expiry heap stays small and correct."""

from __future__ import annotations

import pytest

from lockd.domain.errors import UnavailableError
from lockd.domain.ports import PutMode
from lockd.domain.resources import Kind
from lockd.store import MemoryStore
from tests.contract.helpers import T0, at, lock


async def test_many_re_puts_keep_the_expiry_heap_bounded_and_correct() -> None:
    """Stale heap entries from re-puts and deletes are pruned; expiry stays exact."""
    store = MemoryStore()
    await store.open()
    for i in range(3000):
        await store.put(lock("hot", expires=at(10_000 - i)), PutMode.UPSERT, T0)
    for i in range(500):
        await store.put(lock(f"gone{i}", expires=at(5)), PutMode.CREATE, T0)
        await store.delete(Kind.LOCK, f"gone{i}", T0)
    await store.put(lock("soon", expires=at(1)), PutMode.CREATE, T0)
    # Internal bound: at most 2 entries per live lock plus a fixed slack.
    assert len(store._expiry) <= 2 * 2 + 1024
    assert [event.name for event in await store.expire_due(at(7_001))] == ["soon", "hot"]
    assert await store.expire_due(at(20_000)) == []
    await store.close()


async def test_injected_failure_fails_reads_too_until_cleared() -> None:
    """inject_failure makes every operation unavailable, for tests of the layers above."""
    store = MemoryStore()
    await store.open()
    store.inject_failure("boom")
    with pytest.raises(UnavailableError, match=r"^store unavailable: boom$"):
        await store.snapshot()
    assert not await store.check()
    store.clear_failure()
    assert await store.check()
    await store.close()

"""Contract: IO failures surface as UnavailableError and `healthy`, and recovery is seen."""

from __future__ import annotations

import pytest

from lockd.domain.errors import NotFoundError, UnavailableError
from lockd.domain.ports import PutMode, Store
from lockd.domain.resources import Kind, User
from tests.contract.conftest import Harness
from tests.contract.helpers import T0, all_events, at, lock


async def test_store_is_healthy_only_while_open(harness: Harness) -> None:
    """Not healthy before open or after close; check() agrees."""
    store = harness.make()
    assert not store.healthy
    assert not await store.check()
    await store.open()
    assert store.healthy
    assert await store.check()
    await store.close()
    assert not store.healthy
    assert not await store.check()


async def test_a_closed_store_refuses_work_as_unavailable(harness: Harness) -> None:
    """Operations on a store that is not open raise UnavailableError, not a crash."""
    store = harness.make()
    with pytest.raises(UnavailableError, match=r"^store unavailable: "):
        await store.snapshot()
    await store.open()
    await store.close()
    with pytest.raises(UnavailableError, match=r"^store unavailable: "):
        await store.put(lock("a"), PutMode.CREATE, T0)


async def test_io_failure_raises_unavailable_and_turns_unhealthy(
    harness: Harness, store: Store
) -> None:
    """Writes that hit an IO failure raise UnavailableError and mark the store unhealthy."""
    await store.put(lock("a", expires=at(1)), PutMode.CREATE, T0)
    with harness.fault(store):
        with pytest.raises(UnavailableError, match=r"^store unavailable: "):
            await store.put(lock("b"), PutMode.CREATE, T0)
        assert not store.healthy
        with pytest.raises(UnavailableError):
            await store.delete(Kind.LOCK, "a", T0)
        with pytest.raises(UnavailableError):
            await store.expire_due(at(2))
        with pytest.raises(UnavailableError):
            await store.put_user(User("bob"), PutMode.CREATE)
        assert not store.healthy


async def test_recovery_restores_health_and_loses_nothing(harness: Harness, store: Store) -> None:
    """After the failure ends, check() and the next operation succeed, revisions stay gapless."""
    await store.put(lock("a"), PutMode.CREATE, T0)
    with harness.fault(store), pytest.raises(UnavailableError):
        await store.put(lock("lost"), PutMode.CREATE, T0)
    assert not store.healthy
    assert await store.check()
    assert store.healthy
    committed = await store.put(lock("b"), PutMode.CREATE, at(1))
    assert committed.event.revision == 2
    assert [event.name for event in await all_events(store)] == ["a", "b"]
    assert [resource.name for resource in (await store.snapshot()).resources] == ["a", "b"]


async def test_a_refused_request_after_a_failure_still_proves_recovery(
    harness: Harness, store: Store
) -> None:
    """A NotFoundError is an answer from the store: it counts as healthy again."""
    with harness.fault(store), pytest.raises(UnavailableError):
        await store.put(lock("a"), PutMode.CREATE, T0)
    with pytest.raises(NotFoundError):
        await store.delete(Kind.LOCK, "a", T0)
    assert store.healthy

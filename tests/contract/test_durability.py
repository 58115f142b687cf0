"""Contract for durable adapters: what a reopened store keeps, and what a fresh one gets."""

from __future__ import annotations

import pytest

from lockd.domain.errors import UnauthenticatedError
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode
from lockd.domain.resources import Kind, User
from tests.contract.conftest import StoreOpener
from tests.contract.helpers import T0, all_events, at, cap, join_token, lock, role


async def test_reopen_keeps_resources_revision_epoch_log_and_users(
    open_durable: StoreOpener,
) -> None:
    """Closing and opening the same store changes nothing a reader can see."""
    first = await open_durable()
    await first.put(cap(LockingMode.STRICT), PutMode.UPSERT, T0)
    await first.put(role("dev"), PutMode.CREATE, T0)
    await first.put(lock("a", expires=at(30), message="why"), PutMode.CREATE, at(1))
    await first.delete(Kind.ROLE, "dev", at(2))
    await first.put_user(User("bob", ("dev",)), PutMode.CREATE)
    before, log = await first.snapshot(), await all_events(first)
    await first.close()

    second = await open_durable()
    assert await second.snapshot() == before
    assert await all_events(second) == log
    assert await second.list_users() == [User("bob", ("dev",))]
    assert (await second.put(lock("b"), PutMode.CREATE, at(3))).event.revision == 5


async def test_reopen_keeps_pending_expiries(open_durable: StoreOpener) -> None:
    """A lock stored before a restart still expires on time after it."""
    first = await open_durable()
    await first.put(lock("a", expires=at(30)), PutMode.CREATE, T0)
    await first.close()
    second = await open_durable()
    assert await second.expire_due(at(29)) == []
    assert [event.name for event in await second.expire_due(at(30))] == ["a"]


async def test_a_fresh_store_gets_a_different_epoch(open_durable: StoreOpener) -> None:
    """Two separate histories never share an epoch, so revisions are never confused."""
    one = await open_durable(location="one")
    two = await open_durable(location="two")
    assert (await one.snapshot()).epoch != (await two.snapshot()).epoch


async def test_reopen_keeps_join_tokens(open_durable: StoreOpener) -> None:
    """A token issued before a restart can be used after it, once."""
    first = await open_durable()
    token = join_token(expires=at(60))
    await first.put_token(token)
    await first.close()
    second = await open_durable()
    assert await second.consume_token(token.digest, "agent", at(1)) == token
    await second.close()
    third = await open_durable()
    with pytest.raises(UnauthenticatedError):
        await third.consume_token(token.digest, "agent", at(1))

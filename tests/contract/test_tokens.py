"""Contract: one-time join tokens (put_token / consume_token), on every store adapter."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import timedelta

import pytest

from lockd.domain.errors import (
    AlreadyExistsError,
    InvariantError,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
)
from lockd.domain.ports import JoinToken, PutMode, Store
from lockd.domain.resources import Kind
from tests.contract.conftest import Harness
from tests.contract.helpers import T0, all_events, at, digest_of, join_token, lock

REFUSED = "^" + re.escape("join token is invalid, expired or already used") + "$"


async def test_a_stored_token_is_returned_by_consume(store: Store) -> None:
    """consume_token hands back exactly the token put_token stored, microseconds included."""
    token = join_token(expires=at(60))
    await store.put_token(token)
    assert await store.consume_token(token.digest, "agent", at(1)) == token


async def test_a_token_works_only_once(store: Store) -> None:
    """The second consume of a token is refused with the one generic message."""
    token = join_token()
    await store.put_token(token)
    await store.consume_token(token.digest, "agent", T0)
    with pytest.raises(UnauthenticatedError, match=REFUSED):
        await store.consume_token(token.digest, "agent", T0)


async def test_a_token_of_another_kind_is_refused_and_kept(store: Store) -> None:
    """Asking for the wrong kind is refused generically and does not use the token up."""
    token = join_token(kind="agent")
    await store.put_token(token)
    with pytest.raises(UnauthenticatedError, match=REFUSED):
        await store.consume_token(token.digest, "admin", T0)
    assert await store.consume_token(token.digest, "agent", T0) == token


async def test_an_expired_token_is_refused_and_deleted(store: Store) -> None:
    """At `expires` a token is refused, and it is gone: an earlier `now` cannot use it."""
    token = join_token(expires=at(10))
    await store.put_token(token)
    with pytest.raises(UnauthenticatedError, match=REFUSED):
        await store.consume_token(token.digest, "agent", at(10))
    with pytest.raises(UnauthenticatedError, match=REFUSED):
        await store.consume_token(token.digest, "agent", at(9))


async def test_a_token_is_usable_until_just_before_it_expires(store: Store) -> None:
    """`now < expires` is valid: one microsecond before `expires` still works."""
    token = join_token(expires=at(10))
    await store.put_token(token)
    just_before = at(10) - timedelta(microseconds=1)
    assert await store.consume_token(token.digest, "agent", just_before) == token


async def test_an_unknown_digest_is_refused(store: Store) -> None:
    """A digest that was never stored is refused with the same message as the others."""
    await store.put_token(join_token("known"))
    with pytest.raises(UnauthenticatedError, match=REFUSED):
        await store.consume_token(digest_of("unknown"), "agent", T0)


async def test_put_refuses_a_stored_digest_and_keeps_the_first(store: Store) -> None:
    """A second put of the same digest raises AlreadyExistsError; the first token stays."""
    first = join_token()
    await store.put_token(first)
    with pytest.raises(AlreadyExistsError, match=r"^join token already exists$"):
        await store.put_token(replace(first, kind="admin", created_by="mallory"))
    assert await store.consume_token(first.digest, "agent", T0) == first


async def test_put_refuses_a_secret_or_a_naive_expiry_as_a_caller_bug(store: Store) -> None:
    """Only a SHA-256 hex digest may be stored (never the secret); naive times are bugs."""
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        await store.put_token(replace(join_token(), digest="s3cret"))
    with pytest.raises(ValueError, match="64 lowercase hex digits"):
        await store.put_token(replace(join_token(), digest=join_token().digest.upper()))
    with pytest.raises(InvariantError, match="naive datetime"):
        await store.put_token(replace(join_token(), expires=T0.replace(tzinfo=None)))
    with pytest.raises(InvariantError, match="naive datetime"):
        await store.consume_token(join_token().digest, "agent", T0.replace(tzinfo=None))


async def test_tokens_commit_no_events_and_keep_the_revision(store: Store) -> None:
    """Tokens are not replicated: putting and consuming them leaves the log untouched."""
    await store.put(lock("a"), PutMode.CREATE, T0)
    before, log = await store.snapshot(), await all_events(store)
    await store.put_token(join_token("one"))
    await store.put_token(join_token("two", expires=at(1)))
    await store.consume_token(digest_of("one"), "agent", T0)
    with pytest.raises(UnauthenticatedError):
        await store.consume_token(digest_of("two"), "agent", at(2))
    await store.compact(at(3))
    assert await store.snapshot() == before
    assert await all_events(store) == log
    assert (await store.put(lock("b"), PutMode.CREATE, at(4))).event.revision == 2


async def test_compaction_drops_expired_tokens_and_keeps_live_ones(store: Store) -> None:
    """compact(now) deletes tokens with `expires <= now` without counting them."""
    expired = join_token("expired", expires=at(10))
    due = join_token("due", expires=at(50))
    live = join_token("live", expires=at(100))
    for token in (expired, due, live):
        await store.put_token(token)
    assert await store.compact(at(50)) == 0
    # Asked for at an earlier `now`, a token still stored would be handed out.
    for gone in (expired, due):
        with pytest.raises(UnauthenticatedError, match=REFUSED):
            await store.consume_token(gone.digest, "agent", at(1))
    assert await store.consume_token(live.digest, "agent", at(1)) == live


async def test_concurrent_consumers_of_one_token_get_it_exactly_once(store: Store) -> None:
    """Many tasks racing for one token: exactly one gets it, all others are refused."""
    token = join_token()
    await store.put_token(token)
    results = await asyncio.gather(
        *(store.consume_token(token.digest, "agent", T0) for _ in range(25)),
        return_exceptions=True,
    )
    assert [result for result in results if isinstance(result, JoinToken)] == [token]
    refused = [result for result in results if isinstance(result, UnauthenticatedError)]
    assert len(refused) == 24


async def test_token_io_failures_are_unavailable_and_consume_nothing(
    harness: Harness, store: Store
) -> None:
    """Under an IO failure both token calls raise UnavailableError and turn unhealthy;
    afterwards the token is still there, unused."""
    token = join_token()
    await store.put_token(token)
    with harness.fault(store):
        with pytest.raises(UnavailableError, match=r"^store unavailable: "):
            await store.put_token(join_token("other"))
        assert not store.healthy
        with pytest.raises(UnavailableError, match=r"^store unavailable: "):
            await store.consume_token(token.digest, "agent", T0)
        assert not store.healthy
    with pytest.raises(UnauthenticatedError):
        await store.consume_token(digest_of("other"), "agent", T0)
    assert store.healthy  # a refusal is an answer from the store
    assert await store.consume_token(token.digest, "agent", T0) == token


async def test_tokens_are_separate_from_resources_and_users(store: Store) -> None:
    """Deleting every resource kind leaves tokens alone, and tokens show up in no listing."""
    await store.put_token(join_token())
    await store.put(lock("a"), PutMode.CREATE, T0)
    await store.delete(Kind.LOCK, "a", T0)
    assert (await store.snapshot()).resources == ()
    assert await store.list_users() == []
    assert await store.consume_token(join_token().digest, "agent", T0) == join_token()


async def test_list_tokens_shows_the_usable_tokens_by_digest(store: Store) -> None:
    """list_tokens returns the tokens not yet expired at `now`, sorted by digest; a
    consumed or expired token is not listed."""
    tokens = [join_token(secret, expires=at(60)) for secret in ("a", "b", "c")]
    for token in tokens:
        await store.put_token(token)
    await store.put_token(join_token("old", expires=at(5)))
    await store.consume_token(tokens[1].digest, "agent", T0)
    listed = await store.list_tokens(at(10))
    assert listed == sorted([tokens[0], tokens[2]], key=lambda token: token.digest)


async def test_a_deleted_token_can_no_longer_be_used(store: Store) -> None:
    """delete_token revokes: the token is gone from the list and consume refuses it; a
    second delete is NotFoundError."""
    token = join_token(expires=at(60))
    await store.put_token(token)
    await store.delete_token(token.digest)
    assert await store.list_tokens(T0) == []
    with pytest.raises(UnauthenticatedError, match=REFUSED):
        await store.consume_token(token.digest, "agent", T0)
    with pytest.raises(NotFoundError, match=r"^join token not found$"):
        await store.delete_token(token.digest)

"""Listing and revoking join tokens (issue 15, item 15) on a real TLS auth server: by
the start of their SHA-256, RBAC-protected, audited; a revoked token cannot join."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest

from lockd.client.join import join
from lockd.domain.errors import (
    AccessDeniedError,
    NotFoundError,
    UnauthenticatedError,
    ValidationError,
)
from tests.security.helpers import SecureCluster

HOUR = timedelta(hours=1)


async def test_tokens_are_listed_by_digest_and_a_revoked_one_cannot_join(
    cluster: SecureCluster,
) -> None:
    """ListTokens shows each usable token as the first 16 hex digits of its SHA-256;
    DeleteToken by a 6-digit prefix revokes it (audited); joining with it then fails."""
    admin = cluster.admin()
    first, _ = await admin.create_agent_token(HOUR)
    second, _ = await admin.create_agent_token(HOUR)
    ids = {hashlib.sha256(secret.encode()).hexdigest()[:16]: secret for secret in (first, second)}
    listed = await admin.list_tokens()
    assert {token.id for token in listed} == set(ids)
    assert {(token.type, token.created_by) for token in listed} == {("agent", "Admin")}
    revoked = next(token_id for token_id, secret in ids.items() if secret == first)
    assert (await admin.delete_token(revoked[:6])).id == revoked
    assert [token.id for token in await admin.list_tokens()] == [
        token_id for token_id in ids if token_id != revoked
    ]
    deleted = cluster.audit.of("token.deleted")[-1].fields
    assert (deleted["token"], deleted["by"]) == (revoked, "Admin")
    pin = (await admin.status()).ca_pin
    with pytest.raises(UnauthenticatedError):
        await join(cluster.join_address, first, "node-1", pin)
    await join(cluster.join_address, second, "node-2", pin)
    assert await admin.list_tokens() == []


async def test_token_administration_needs_token_rights_and_a_clear_id(
    cluster: SecureCluster,
) -> None:
    """A user without rights on token may neither list nor revoke; a short or unknown
    id is refused with what to give instead."""
    auditor = await cluster.user("alice", ("auditor",))
    client = cluster.client(auditor.credentials())
    with pytest.raises(AccessDeniedError, match='"list" on "token"'):
        await client.list_tokens()
    with pytest.raises(AccessDeniedError, match='"delete" on "token"'):
        await client.delete_token("abcdef")
    admin = cluster.admin()
    with pytest.raises(ValidationError, match="at least 6 lowercase hex digits"):
        await admin.delete_token("abc")
    with pytest.raises(NotFoundError, match='no usable join token starts with "abcdef"'):
        await admin.delete_token("abcdef")

"""Query targets of an identity (SPEC §2, §9)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.identity import Identity
from lockd.domain.lock import TARGET_FIELDS

_SCALAR_FIELDS = (
    "user",
    "login",
    "mfa_device",
    "device",
    "windows_desktop",
    "bot_instance_id",
    "join_token",
    "server_id",
)

small_values = st.sampled_from(["", "a", "b"])
identities = st.builds(
    Identity,
    user=small_values,
    roles=st.lists(small_values, max_size=3).map(tuple),
    login=small_values,
    mfa_device=small_values,
    device=small_values,
    access_requests=st.lists(small_values, max_size=3).map(tuple),
    windows_desktop=small_values,
    bot_instance_id=small_values,
    join_token=small_values,
    server_id=small_values,
)


def test_empty_identity_has_no_query_targets() -> None:
    """Nothing set, nothing to match: an empty identity yields no query target."""
    assert Identity().query_targets() == ()


def test_full_identity_yields_one_single_field_target_per_attribute() -> None:
    """Every attribute, one target per role and per access request, in SPEC §2's order."""
    identity = Identity(
        user="alice",
        roles=("dev", "ops"),
        login="root",
        mfa_device="mfa-1",
        device="dev-1",
        access_requests=("req-1", "req-2"),
        windows_desktop="desk",
        bot_instance_id="bot-1",
        join_token="tok",
        server_id="node-1",
    )
    assert identity.query_targets() == (
        ("user", "alice"),
        ("role", "dev"),
        ("role", "ops"),
        ("login", "root"),
        ("mfa_device", "mfa-1"),
        ("device", "dev-1"),
        ("access_request", "req-1"),
        ("access_request", "req-2"),
        ("server_id", "node-1"),
        ("windows_desktop", "desk"),
        ("bot_instance_id", "bot-1"),
        ("join_token", "tok"),
    )


@pytest.mark.parametrize("field", _SCALAR_FIELDS)
def test_a_single_non_empty_attribute_yields_exactly_its_target(field: str) -> None:
    """Each scalar attribute contributes a target only when it is set."""
    attributes: dict[str, Any] = {field: "x"}
    assert Identity(**attributes).query_targets() == ((field, "x"),)


def test_one_target_per_role() -> None:
    """Each role is its own {role} query target."""
    assert Identity(roles=("a", "b", "c")).query_targets() == (
        ("role", "a"),
        ("role", "b"),
        ("role", "c"),
    )


def test_one_target_per_access_request() -> None:
    """Each active access request is its own {access_request} query target."""
    assert Identity(access_requests=("r1", "r2")).query_targets() == (
        ("access_request", "r1"),
        ("access_request", "r2"),
    )


def test_empty_roles_and_requests_are_skipped() -> None:
    """An empty role name or request id yields no target."""
    assert Identity(roles=("", "dev"), access_requests=("",)).query_targets() == (("role", "dev"),)


def test_duplicate_roles_yield_one_target() -> None:
    """A role listed twice yields a single target."""
    assert Identity(roles=("dev", "dev")).query_targets() == (("role", "dev"),)


def test_on_server_adds_the_agents_server_id() -> None:
    """Identity.on_server makes the serving agent's server_id a query target."""
    identity = Identity(user="alice")
    served = identity.on_server("node-uuid")
    assert served.query_targets() == (("user", "alice"), ("server_id", "node-uuid"))
    assert identity.query_targets() == (("user", "alice"),)


def test_on_server_replaces_a_previous_server_id() -> None:
    """Serving on another agent replaces, not adds, the server_id."""
    served = Identity(user="alice", server_id="old").on_server("new")
    assert served.query_targets() == (("user", "alice"), ("server_id", "new"))


@given(identities)
def test_query_targets_are_non_empty_known_single_fields_without_duplicates(
    identity: Identity,
) -> None:
    """Every query target is one known field with a non-empty value, each listed once."""
    targets = identity.query_targets()
    assert len(set(targets)) == len(targets)
    for field, value in targets:
        assert field in TARGET_FIELDS
        assert value


@given(identities)
def test_query_targets_cover_every_non_empty_attribute(identity: Identity) -> None:
    """Nothing set on the identity is left out of its query targets."""
    targets = set(identity.query_targets())
    for field in _SCALAR_FIELDS:
        value = getattr(identity, field)
        assert (not value) or (field, value) in targets
    assert {("role", r) for r in identity.roles if r} <= targets
    assert {("access_request", r) for r in identity.access_requests if r} <= targets
    expected = (
        sum(1 for f in _SCALAR_FIELDS if getattr(identity, f))
        + len({r for r in identity.roles if r})
        + len({r for r in identity.access_requests if r})
    )
    assert len(targets) == expected


def test_identity_is_immutable() -> None:
    """Identities are frozen values; on_server returns a new one."""
    identity = Identity(user="alice")
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.user = "bob"  # type: ignore[misc]

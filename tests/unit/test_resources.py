"""Roles, rules, users and the cluster auth preference (SPEC §5, §6)."""

from __future__ import annotations

import pytest

from lockd.domain.errors import ValidationError
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.resources import (
    CLUSTER_AUTH_PREFERENCE_NAME,
    ClusterAuthPreference,
    Kind,
    Role,
    Rule,
    User,
    kind_of,
)

LOCKSMITH_RULE = Rule(resources=("lock",), verbs=("list", "create", "read", "update", "delete"))


def test_resource_kind_names_are_those_of_the_documents_and_rules() -> None:
    """Kinds spell as in documents and RBAC rules."""
    assert [k.value for k in Kind] == [
        "lock",
        "role",
        "user",
        "cluster_auth_preference",
        "token",
    ]


@pytest.mark.parametrize("verb", ["list", "create", "read", "update", "delete"])
def test_locksmith_rule_grants_every_lock_verb(verb: str) -> None:
    """Teleport's locksmith rule allows all five verbs on locks."""
    assert LOCKSMITH_RULE.grants("lock", verb)


def test_rule_grants_nothing_on_other_resources() -> None:
    """A rule on locks says nothing about roles."""
    assert not LOCKSMITH_RULE.grants("role", "read")


def test_rule_without_a_verb_does_not_grant_it() -> None:
    """A read-only rule does not grant create."""
    assert not Rule(resources=("lock",), verbs=("list", "read")).grants("lock", "create")


def test_wildcards_grant_every_resource_and_verb() -> None:
    """`*` in resources or verbs stands for every one."""
    assert Rule(resources=("*",), verbs=("read",)).grants("token", "read")
    assert Rule(resources=("user",), verbs=("*",)).grants("user", "delete")
    assert not Rule(resources=("*",), verbs=("read",)).grants("token", "delete")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule(resources=(), verbs=("read",)), "at least one resource and one verb"),
        (Rule(resources=("lock",), verbs=()), "at least one resource and one verb"),
        (Rule(resources=("locks",), verbs=("read",)), 'unknown resource "locks" in role rule'),
        (Rule(resources=("lock",), verbs=("write",)), 'unknown verb "write" in role rule'),
    ],
)
def test_invalid_rules_are_refused(rule: Rule, message: str) -> None:
    """Empty rules and unknown resources or verbs are refused."""
    with pytest.raises(ValidationError, match=message):
        rule.validate()


def test_role_validation_checks_its_name_and_every_rule() -> None:
    """A role with a bad deny rule or a bad name is refused."""
    Role(name="locksmith", allow=(LOCKSMITH_RULE,)).validate()
    with pytest.raises(ValidationError, match="unknown verb"):
        Role(name="r", deny=(Rule(resources=("lock",), verbs=("nuke",)),)).validate()
    with pytest.raises(ValidationError, match=r"^role name must not be empty$"):
        Role(name="").validate()


def test_user_validation_checks_role_names() -> None:
    """A user's role names follow the name rules."""
    User(name="alice", roles=("dev",)).validate()
    with pytest.raises(ValidationError, match="role name"):
        User(name="alice", roles=("bad/role",)).validate()


def test_cluster_auth_preference_is_a_best_effort_singleton_by_default() -> None:
    """Its name is fixed and its default mode is best_effort."""
    cap = ClusterAuthPreference()
    assert cap.name == CLUSTER_AUTH_PREFERENCE_NAME == "cluster-auth-preference"
    assert cap.locking_mode is LockingMode.BEST_EFFORT


def test_kind_of_names_each_resource_kind() -> None:
    """kind_of maps each resource class to its kind."""
    assert kind_of(Lock(name="l", target=LockTarget(user="u"))) is Kind.LOCK
    assert kind_of(Role(name="r")) is Kind.ROLE
    assert kind_of(User(name="u")) is Kind.USER
    assert kind_of(ClusterAuthPreference()) is Kind.CLUSTER_AUTH_PREFERENCE

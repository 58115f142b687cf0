"""The resources besides locks: roles, users and the cluster auth preference.

Roles carry RBAC rules (SPEC §6) and an optional locking mode (`options.lock`). Locks,
roles and the cluster auth preference are *replicated* to agents; users are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lockd.domain.errors import ValidationError
from lockd.domain.lock import Lock, quote, validate_name
from lockd.domain.modes import DEFAULT_LOCKING_MODE, LockingMode


class Kind(StrEnum):
    """Resource kinds as they appear in documents and in RBAC rules."""

    LOCK = "lock"
    ROLE = "role"
    USER = "user"
    CLUSTER_AUTH_PREFERENCE = "cluster_auth_preference"
    TOKEN = "token"


class Verb(StrEnum):
    LIST = "list"
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"


# The identity of the local admin socket (`created_by: Admin`); no user may take it.
ADMIN_NAME = "Admin"
WILDCARD = "*"
RULE_RESOURCES = frozenset(kind.value for kind in Kind) | {WILDCARD}
RULE_VERBS = frozenset(verb.value for verb in Verb) | {WILDCARD}


@dataclass(frozen=True, slots=True)
class Rule:
    """`resources: [lock]`, `verbs: [list, read]`; `*` stands for every one."""

    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def validate(self) -> None:
        if not self.resources or not self.verbs:
            raise ValidationError("a role rule needs at least one resource and one verb")
        for resource in self.resources:
            if resource not in RULE_RESOURCES:
                raise ValidationError(f"unknown resource {quote(resource)} in role rule")
        for verb in self.verbs:
            if verb not in RULE_VERBS:
                raise ValidationError(f"unknown verb {quote(verb)} in role rule")

    def grants(self, resource: str, verb: str) -> bool:
        return (resource in self.resources or WILDCARD in self.resources) and (
            verb in self.verbs or WILDCARD in self.verbs
        )


@dataclass(frozen=True, slots=True)
class Role:
    """A role: what it allows and denies, and the locking mode it asks for (if any)."""

    name: str
    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    lock_mode: LockingMode | None = None

    def validate(self) -> None:
        validate_name(self.name, "role")
        for rule in (*self.allow, *self.deny):
            rule.validate()


@dataclass(frozen=True, slots=True)
class User:
    """A user and the names of its roles."""

    name: str
    roles: tuple[str, ...] = ()

    def validate(self) -> None:
        validate_name(self.name, "user")
        if self.name == ADMIN_NAME:
            raise ValidationError(f'user name "{ADMIN_NAME}" is reserved for the local admin')
        for role in self.roles:
            validate_name(role, "role")


CLUSTER_AUTH_PREFERENCE_NAME = "cluster-auth-preference"


@dataclass(frozen=True, slots=True)
class ClusterAuthPreference:
    """The cluster-wide settings; lockd uses `locking_mode`."""

    locking_mode: LockingMode = DEFAULT_LOCKING_MODE

    @property
    def name(self) -> str:
        return CLUSTER_AUTH_PREFERENCE_NAME

    def validate(self) -> None:
        """Every value the type admits is valid; kept for a uniform resource interface."""


Resource = Lock | Role | User | ClusterAuthPreference
ReplicatedResource = Lock | Role | ClusterAuthPreference


def kind_of(resource: Resource) -> Kind:
    match resource:
        case Lock():
            return Kind.LOCK
        case Role():
            return Kind.ROLE
        case User():
            return Kind.USER
        case ClusterAuthPreference():
            return Kind.CLUSTER_AUTH_PREFERENCE

"""Who may do what (SPEC §6): callers, verbs per operation, and the decision.

A caller is the local admin (full rights, `created_by: Admin`), a user with roles, or an
agent (which may only watch and report). Deny rules win over allow rules. Locks apply
to callers too; that check lives with the lock index (`Caller.identity()`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from lockd.domain.errors import AccessDeniedError
from lockd.domain.identity import Identity
from lockd.domain.lock import access_denied_message
from lockd.domain.resources import ADMIN_NAME, Kind, Role, Verb

SYSTEM_NAME = "lockd"


class CallerKind(StrEnum):
    ADMIN = "admin"
    USER = "user"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls, and from where: `source` is the transport's peer address (audited
    with every change the caller makes); it takes no part in any decision."""

    kind: CallerKind
    name: str
    roles: tuple[str, ...] = ()
    server_id: str = ""
    source: str = field(default="", compare=False)

    @classmethod
    def admin(cls) -> Caller:
        return cls(CallerKind.ADMIN, ADMIN_NAME)

    @classmethod
    def user(cls, name: str, roles: Iterable[str]) -> Caller:
        return cls(CallerKind.USER, name, tuple(roles))

    @classmethod
    def agent(cls, server_id: str) -> Caller:
        return cls(CallerKind.AGENT, server_id, server_id=server_id)

    @classmethod
    def system(cls) -> Caller:
        """The auth server acting on its own (preset roles at first start): full rights,
        audited as `lockd`."""
        return cls(CallerKind.ADMIN, SYSTEM_NAME)

    def identity(self) -> Identity:
        """The identity that locks are matched against for this caller's API calls."""
        if self.kind is CallerKind.AGENT:
            return Identity(server_id=self.server_id)
        return Identity(user=self.name, roles=self.roles)


# Verbs each operation needs (SPEC §6 table).
GET = (Verb.READ,)
LIST = (Verb.LIST, Verb.READ)
PUT = (Verb.CREATE, Verb.UPDATE)
CREATE = (Verb.CREATE,)
DELETE = (Verb.DELETE,)


def authorize(
    caller: Caller, roles: Mapping[str, Role], resource: Kind, verbs: Iterable[Verb]
) -> None:
    """Raise AccessDeniedError naming the first verb the caller lacks on `resource`."""
    if caller.kind is CallerKind.ADMIN:
        return
    held = [roles[name] for name in caller.roles if name in roles]
    for verb in verbs:
        allowed = caller.kind is CallerKind.USER and any(
            rule.grants(resource, verb) for role in held for rule in role.allow
        )
        denied = any(rule.grants(resource, verb) for role in held for rule in role.deny)
        if not allowed or denied:
            raise AccessDeniedError(access_denied_message(verb.value, resource.value))

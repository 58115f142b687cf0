"""Replication events and the state they build: what the auth server streams to agents.

Every committed change to a replicated resource (lock, role, cluster auth preference)
gets the next revision, gapless, within an epoch (DESIGN §3). `ReplicatedState` is the
state those events build; the auth server and the agents both fold events into it with
`apply`, so both sides agree on what a revision means.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from lockd.domain.errors import InvariantError
from lockd.domain.lock import Lock
from lockd.domain.lock_table import PackedLock
from lockd.domain.resources import (
    ClusterAuthPreference,
    Kind,
    ReplicatedResource,
    Role,
    kind_of,
)
from lockd.domain.unix_micros import from_micros, to_micros

REPLICATED_KINDS = (Kind.LOCK, Kind.ROLE, Kind.CLUSTER_AUTH_PREFERENCE)

# What a snapshot or an event carries: a resource or, on an agent, a lock still in the
# packed form it was read into off the wire (lockd.wire.convert).
StreamedResource = ReplicatedResource | PackedLock


def unpacked(resource: StreamedResource) -> ReplicatedResource:
    """The resource itself (a packed lock built into its `Lock`)."""
    return resource.unpack() if isinstance(resource, PackedLock) else resource


class EventType(StrEnum):
    PUT = "put"
    DELETE = "delete"
    EXPIRE = "expire"


class Event(NamedTuple):
    """One committed change. PUT carries the resource; DELETE and EXPIRE only its name.

    `time_us` is the commit time in microseconds since 1970 (UTC), as stores keep and
    frames carry it; `time` builds its datetime when read. An agent receives every event
    and reads few commit times. A named tuple: immutable, and built in a third of a
    frozen dataclass's time.
    """

    revision: int
    type: EventType
    kind: Kind
    name: str
    resource: StreamedResource | None
    time_us: int

    @property
    def time(self) -> datetime:
        return from_micros(self.time_us)

    @classmethod
    def put(cls, revision: int, resource: ReplicatedResource, time: datetime) -> Event:
        return cls(
            revision, EventType.PUT, kind_of(resource), resource.name, resource, to_micros(time)
        )

    @classmethod
    def removal(
        cls, revision: int, event_type: EventType, kind: Kind, name: str, time: datetime
    ) -> Event:
        return cls(revision, event_type, kind, name, None, to_micros(time))


@dataclass(slots=True)
class ReplicatedState:
    """Locks, roles and the cluster auth preference at one (epoch, revision)."""

    epoch: str = ""
    revision: int = 0
    # A dict on the auth server; the agent's compact lockd.domain.lock_table.LockTable.
    locks: MutableMapping[str, Lock] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    cluster_auth_preference: ClusterAuthPreference = field(default_factory=ClusterAuthPreference)

    def resources(self) -> list[ReplicatedResource]:
        """Every resource, preference first (agents need it before sessions)."""
        return [self.cluster_auth_preference, *self.roles.values(), *self.locks.values()]

    def apply(self, event: Event) -> None:
        """Fold the next event in; anything but revision + 1 is a bug in the caller."""
        if event.revision != self.revision + 1:
            raise InvariantError(
                f"event revision {event.revision} does not follow applied revision {self.revision}"
            )
        apply_change(self, event)
        self.revision = event.revision

    @classmethod
    def from_resources(
        cls,
        epoch: str,
        revision: int,
        resources: Iterable[ReplicatedResource],
        locks: MutableMapping[str, Lock] | None = None,
    ) -> ReplicatedState:
        """The state of `resources`; its locks filed into `locks` (default a new dict)."""
        state = cls(epoch=epoch, revision=revision, locks={} if locks is None else locks)
        for resource in resources:
            _put(state, resource)
        return state


def apply_change(state: ReplicatedState, event: Event) -> None:
    """Apply an event's change to the resources (the caller keeps revision bookkeeping)."""
    if event.type is EventType.PUT:
        if event.resource is None:
            raise InvariantError(f"PUT event {event.revision} carries no resource")
        _put(state, event.resource)
    elif event.kind is Kind.LOCK:
        state.locks.pop(event.name, None)
    elif event.kind is Kind.ROLE:
        state.roles.pop(event.name, None)
    elif event.kind is Kind.CLUSTER_AUTH_PREFERENCE:
        state.cluster_auth_preference = ClusterAuthPreference()
    else:  # a user or token event would otherwise reset the preference (strict → default)
        raise InvariantError(
            f"{event.type} event {event.revision} for unreplicated kind {event.kind}"
        )


def _put(state: ReplicatedState, resource: StreamedResource) -> None:
    match resource:
        case PackedLock():
            state.locks[resource.name] = resource.unpack()
        case Lock():
            state.locks[resource.name] = resource
        case Role():
            state.roles[resource.name] = resource
        case ClusterAuthPreference():
            state.cluster_auth_preference = resource
        case _:
            raise InvariantError(f"resource {resource!r} is not replicated")

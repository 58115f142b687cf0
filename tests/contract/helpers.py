"""Builders and checks shared by the contract tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from lockd.domain.events import Event, ReplicatedState
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.ports import JoinToken, Store
from lockd.domain.resources import ClusterAuthPreference, Role, Rule

# Microseconds on purpose: round trips must keep them.
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def lock(
    name: str, *, user: str = "alice", expires: datetime | None = None, message: str = ""
) -> Lock:
    return Lock(
        name=name,
        target=LockTarget(user=user),
        message=message,
        expires=expires,
        created_at=T0,
        created_by="admin",
    )


def role(name: str, mode: LockingMode | None = None) -> Role:
    return Role(name=name, allow=(Rule(resources=("lock",), verbs=("read",)),), lock_mode=mode)


def cap(mode: LockingMode = LockingMode.STRICT) -> ClusterAuthPreference:
    return ClusterAuthPreference(locking_mode=mode)


async def all_events(store: Store) -> list[Event]:
    """The whole retained log, read in small pages to exercise paging too."""
    events: list[Event] = []
    after = 0
    while page := await store.events_since(after, 3):
        events.extend(page)
        after = page[-1].revision
    return events


async def replayed(store: Store) -> ReplicatedState:
    """The state an agent builds by folding the whole log from revision 0."""
    state = ReplicatedState()
    for event in await all_events(store):
        state.apply(event)
    return state


async def snapshot_state(store: Store) -> ReplicatedState:
    snapshot = await store.snapshot()
    return ReplicatedState.from_resources(snapshot.epoch, snapshot.revision, snapshot.resources)


def digest_of(secret: str) -> str:
    """The lowercase hex SHA-256 of a join token secret: all the store ever sees."""
    return hashlib.sha256(secret.encode()).hexdigest()


def join_token(
    secret: str = "s3cret", *, kind: str = "agent", expires: datetime = T0 + timedelta(hours=1)
) -> JoinToken:
    return JoinToken(digest=digest_of(secret), kind=kind, expires=expires, created_by="admin")

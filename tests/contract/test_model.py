"""Contract: random operation sequences match a plain reference model, on every adapter.

The model is the obvious, slow implementation (scan every lock to find due ones), so it
checks the adapters' indexes (the memory heap, the SQLite expires index) and their
bookkeeping under puts, re-puts, deletes and expiries interleaved at random.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import pytest

from lockd.domain.errors import AlreadyExistsError, LockdError, NotFoundError
from lockd.domain.events import Event, EventType, ReplicatedState
from lockd.domain.lock import Lock
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Committed, PutMode, Store
from lockd.domain.resources import CLUSTER_AUTH_PREFERENCE_NAME, Kind, ReplicatedResource
from tests.contract.helpers import all_events, at, cap, lock, replayed, role, snapshot_state

T = TypeVar("T")
NAMES = ("a", "b", "c", "d", "e")


class Model:
    """The reference: every rule of the port, implemented the slow and obvious way."""

    def __init__(self) -> None:
        self.state = ReplicatedState()
        self.cap_set = False

    def _commit(self, event_type: EventType, kind: Kind, name: str, now: datetime) -> Event:
        return Event.removal(self.state.revision + 1, event_type, kind, name, now)

    def put(self, resource: ReplicatedResource, mode: PutMode, now: datetime) -> Committed:
        if isinstance(resource, Lock):
            exists = resource.name in self.state.locks
        elif resource.name == CLUSTER_AUTH_PREFERENCE_NAME:
            exists, mode = self.cap_set, PutMode.UPSERT
        else:
            exists = resource.name in self.state.roles
        if mode is PutMode.CREATE and exists:
            raise AlreadyExistsError(resource.name)
        if mode is PutMode.UPDATE and not exists:
            raise NotFoundError(resource.name)
        self.cap_set = self.cap_set or resource.name == CLUSTER_AUTH_PREFERENCE_NAME
        event = Event.put(self.state.revision + 1, resource, now)
        self.state.apply(event)
        return Committed(event, created=not exists)

    def delete(self, kind: Kind, name: str, now: datetime) -> Event:
        present = {
            Kind.LOCK: name in self.state.locks,
            Kind.ROLE: name in self.state.roles,
            Kind.CLUSTER_AUTH_PREFERENCE: self.cap_set,
        }[kind]
        if not present:
            raise NotFoundError(name)
        self.cap_set = self.cap_set and kind is not Kind.CLUSTER_AUTH_PREFERENCE
        event = self._commit(EventType.DELETE, kind, name, now)
        self.state.apply(event)
        return event

    def expire_due(self, now: datetime) -> list[Event]:
        due = sorted(
            (lock.expires, lock.name)
            for lock in self.state.locks.values()
            if lock.expires is not None and lock.expires <= now
        )
        events = []
        for _, name in due:
            events.append(self._commit(EventType.EXPIRE, Kind.LOCK, name, now))
            self.state.apply(events[-1])
        return events


async def _step(store: Store, model: Model, rng: random.Random, clock: float) -> None:
    now = at(clock)
    roll = rng.random()
    if roll < 0.5:
        expires = None if rng.random() < 0.3 else at(clock + rng.choice([0, 1, 2, 5, 9]))
        resource: ReplicatedResource = lock(rng.choice(NAMES), expires=expires)
    elif roll < 0.6:
        resource = role(rng.choice(NAMES), rng.choice([None, LockingMode.STRICT]))
    elif roll < 0.65:
        resource = cap(rng.choice(list(LockingMode)))
    elif roll < 0.85:
        kind = rng.choice([Kind.LOCK, Kind.LOCK, Kind.ROLE, Kind.CLUSTER_AUTH_PREFERENCE])
        name = CLUSTER_AUTH_PREFERENCE_NAME if kind is Kind.CLUSTER_AUTH_PREFERENCE else None
        name = name or rng.choice(NAMES)
        expected = _outcome(lambda: model.delete(kind, name, now))
        assert await _store_outcome(store.delete(kind, name, now)) == expected
        return
    else:
        assert await store.expire_due(now) == model.expire_due(now)
        return
    mode = rng.choice(list(PutMode))
    committed = _outcome(lambda: model.put(resource, mode, now))
    assert await _store_outcome(store.put(resource, mode, now)) == committed


def _outcome(call: Callable[[], T]) -> T | type[LockdError]:
    """The result of `call`, or the class of the expected error it raised."""
    try:
        return call()
    except (AlreadyExistsError, NotFoundError) as error:
        return type(error)


async def _store_outcome(call: Awaitable[T]) -> T | type[LockdError]:
    try:
        return await call
    except (AlreadyExistsError, NotFoundError) as error:
        return type(error)


@pytest.mark.parametrize("seed", range(4))
async def test_random_operations_match_the_reference_model(store: Store, seed: int) -> None:
    """Random puts, deletes and expiries leave the store exactly where the model is."""
    rng = random.Random(seed)
    model = Model()
    clock = 0.0
    for _ in range(250):
        clock += rng.choice([0, 0, 0.5, 1])
        await _step(store, model, rng, clock)
    snapshot = await snapshot_state(store)
    assert snapshot.revision == model.state.revision
    assert snapshot.locks == model.state.locks
    assert snapshot.roles == model.state.roles
    assert snapshot.cluster_auth_preference == model.state.cluster_auth_preference
    replay = await replayed(store)
    assert (replay.locks, replay.roles) == (snapshot.locks, snapshot.roles)
    assert [event.revision for event in await all_events(store)] == list(
        range(1, model.state.revision + 1)
    )

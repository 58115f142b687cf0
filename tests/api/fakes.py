"""`ControlledStore`: a real store behind two switches, for what a real store cannot do
on demand.

It delegates every call to the store it wraps (a real SqliteStore in this suite), except:

* `failing = True`: every operation raises UnavailableError and `healthy` is False, as
  when the disk or database goes away; `failing = False` makes it work again. The
  failure itself is not under test here (the contract suite covers real IO faults);
  what the auth server does about it is.
* `hold_expiry = True`: `expire_due` commits nothing, so a lock past its `expires` stays
  stored for a while — the short window in which ListLocks(in_force_only) matters.

Whatever else the port offers passes through untouched (and unswitched).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lockd.domain.errors import UnavailableError
from lockd.domain.events import Event
from lockd.domain.ports import Committed, PutMode, Snapshot, Store
from lockd.domain.resources import Kind, ReplicatedResource, User


class ControlledStore:
    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.failing = False
        self.hold_expiry = False

    def __getattr__(self, name: str) -> Any:
        # Whatever else the Store port offers (it grows: tokens, ...) passes straight
        # through to the real store.
        return getattr(self.inner, name)

    def _gate(self) -> None:
        if self.failing:
            raise UnavailableError("store unavailable: disk I/O error (test double)")

    @property
    def type(self) -> str:
        return self.inner.type

    @property
    def healthy(self) -> bool:
        return not self.failing and self.inner.healthy

    async def check(self) -> bool:
        if self.failing:
            return False
        return await self.inner.check()

    async def open(self) -> None:
        self._gate()
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def snapshot(self) -> Snapshot:
        self._gate()
        return await self.inner.snapshot()

    async def events_since(self, revision: int, limit: int) -> list[Event]:
        self._gate()
        return await self.inner.events_since(revision, limit)

    async def put(self, resource: ReplicatedResource, mode: PutMode, now: datetime) -> Committed:
        self._gate()
        return await self.inner.put(resource, mode, now)

    async def delete(self, kind: Kind, name: str, now: datetime) -> Event:
        self._gate()
        return await self.inner.delete(kind, name, now)

    async def expire_due(self, now: datetime) -> list[Event]:
        self._gate()
        if self.hold_expiry:
            return []
        return await self.inner.expire_due(now)

    async def compact(self, now: datetime) -> int:
        self._gate()
        return await self.inner.compact(now)

    async def get_user(self, name: str) -> User | None:
        self._gate()
        return await self.inner.get_user(name)

    async def list_users(self) -> list[User]:
        self._gate()
        return await self.inner.list_users()

    async def put_user(self, user: User, mode: PutMode) -> bool:
        self._gate()
        return await self.inner.put_user(user, mode)

    async def delete_user(self, name: str) -> None:
        self._gate()
        await self.inner.delete_user(name)

"""`OpsStore`: the Store methods of the SQLite and PostgreSQL adapters, written once.

Both adapters keep their transactions in a module of plain functions with the same names
and arguments (`sqlite_ops`, `postgres_ops`: `put(conn, resource, mode, now)`, ...). The
Store methods only check their arguments (`lockd.store.rules`) and run the function of
that name on a connection; they live here. An adapter names its module (`OPS`) and says
how to run a function on a connection (`_run`: on the SQLite thread, or awaited on a
pooled PostgreSQL connection), with its own errors and health bookkeeping.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any, ClassVar, cast

from lockd.domain.errors import UnavailableError
from lockd.domain.events import Event
from lockd.domain.ports import Committed, JoinToken, PutMode, Snapshot
from lockd.domain.resources import Kind, ReplicatedResource, User
from lockd.domain.unix_micros import require_aware
from lockd.store import rules


class OpsStore(ABC):
    """The Store port over an ops module; `_run` and `healthy` come from the adapter."""

    OPS: ClassVar[ModuleType]

    def __init__(self, retention_age: timedelta, retention_count: int) -> None:
        rules.check_retention(retention_age, retention_count)
        self._retention_age = retention_age
        self._retention_count = retention_count
        self._healthy = False

    @property
    def healthy(self) -> bool:
        return self._healthy

    @abstractmethod
    async def _run(self, operation: Callable[..., Any], *args: Any) -> Any:
        """`operation(conn, *args)` on a connection of the store; its result.

        UnavailableError (and `healthy` false) when the database cannot be used."""

    async def check(self) -> bool:
        try:
            await self._run(self.OPS.ping)
        except UnavailableError:
            self._healthy = False
        return self._healthy

    async def snapshot(self) -> Snapshot:
        return cast(Snapshot, await self._run(self.OPS.snapshot))

    async def events_since(self, revision: int, limit: int) -> list[Event]:
        rules.check_events_args(revision, limit)
        return cast(list[Event], await self._run(self.OPS.events_since, revision, limit))

    async def put(self, resource: ReplicatedResource, mode: PutMode, now: datetime) -> Committed:
        require_aware(now)
        return cast(Committed, await self._run(self.OPS.put, resource, mode, now))

    async def delete(self, kind: Kind, name: str, now: datetime) -> Event:
        rules.check_replicated_kind(kind)
        require_aware(now)
        return cast(Event, await self._run(self.OPS.delete, kind, name, now))

    async def expire_due(self, now: datetime) -> list[Event]:
        require_aware(now)
        return cast(list[Event], await self._run(self.OPS.expire_due, now))

    async def compact(self, now: datetime) -> int:
        require_aware(now)
        age, count = self._retention_age, self._retention_count
        return cast(int, await self._run(self.OPS.compact, now, age, count))

    async def get_user(self, name: str) -> User | None:
        return cast(User | None, await self._run(self.OPS.get_user, name))

    async def list_users(self) -> list[User]:
        return cast(list[User], await self._run(self.OPS.list_users))

    async def put_user(self, user: User, mode: PutMode) -> bool:
        return cast(bool, await self._run(self.OPS.put_user, user, mode))

    async def delete_user(self, name: str) -> None:
        await self._run(self.OPS.delete_user, name)

    async def put_token(self, token: JoinToken) -> None:
        rules.check_token(token)
        await self._run(self.OPS.put_token, token)

    async def list_tokens(self, now: datetime) -> list[JoinToken]:
        require_aware(now)
        return cast(list[JoinToken], await self._run(self.OPS.list_tokens, now))

    async def delete_token(self, digest: str) -> None:
        await self._run(self.OPS.delete_token, digest)

    async def consume_token(self, digest: str, kind: str, now: datetime) -> JoinToken:
        require_aware(now)
        return cast(JoinToken, await self._run(self.OPS.consume_token, digest, kind, now))

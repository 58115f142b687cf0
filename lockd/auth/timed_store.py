"""A Store decorator that times every call (`lockd_store_operation_seconds`) and reports
the store unhealthy while a call has been running longer than `stall_after`.

A frozen disk (fsfreeze, a hung NFS mount, another process holding the SQLite write
lock) makes a write hang instead of fail: without a bound the store would look healthy
for as long as the write hangs. With one, `lockctl status`, the health service and
`lockd_store_healthy` say "unhealthy" within `stall_after` of the write starting.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from lockd.domain.events import Event
from lockd.domain.ports import Committed, JoinToken, PutMode, Snapshot, Store
from lockd.domain.resources import Kind, ReplicatedResource, User

T = TypeVar("T")
Observe = Callable[[str, float], None]


DEFAULT_STALL_AFTER = 5.0


class TimedStore:
    """Delegates to `inner`, reporting (operation, seconds) for each call, failed or not."""

    def __init__(
        self, inner: Store, observe: Observe, stall_after: float = DEFAULT_STALL_AFTER
    ) -> None:
        self.inner = inner
        self._observe = observe
        self.stall_after = stall_after
        self._running: dict[int, float] = {}  # call number -> perf_counter at its start
        self._calls = 0

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        self._calls += 1
        number, started = self._calls, time.perf_counter()
        self._running[number] = started
        try:
            return await call
        finally:
            del self._running[number]
            self._observe(operation, time.perf_counter() - started)

    def stalled(self) -> bool:
        """Whether a call has been running for more than `stall_after` seconds."""
        oldest = min(self._running.values(), default=None)
        return oldest is not None and time.perf_counter() - oldest > self.stall_after

    @property
    def type(self) -> str:
        return self.inner.type

    @property
    def healthy(self) -> bool:
        return self.inner.healthy and not self.stalled()

    async def open(self) -> None:
        await self._timed("open", self.inner.open())

    async def close(self) -> None:
        await self._timed("close", self.inner.close())

    async def check(self) -> bool:
        return await self._timed("check", self.inner.check())

    async def snapshot(self) -> Snapshot:
        return await self._timed("snapshot", self.inner.snapshot())

    async def events_since(self, revision: int, limit: int) -> list[Event]:
        return await self._timed("events_since", self.inner.events_since(revision, limit))

    async def put(self, resource: ReplicatedResource, mode: PutMode, now: datetime) -> Committed:
        return await self._timed("put", self.inner.put(resource, mode, now))

    async def delete(self, kind: Kind, name: str, now: datetime) -> Event:
        return await self._timed("delete", self.inner.delete(kind, name, now))

    async def expire_due(self, now: datetime) -> list[Event]:
        return await self._timed("expire_due", self.inner.expire_due(now))

    async def compact(self, now: datetime) -> int:
        return await self._timed("compact", self.inner.compact(now))

    async def get_user(self, name: str) -> User | None:
        return await self._timed("get_user", self.inner.get_user(name))

    async def list_users(self) -> list[User]:
        return await self._timed("list_users", self.inner.list_users())

    async def put_user(self, user: User, mode: PutMode) -> bool:
        return await self._timed("put_user", self.inner.put_user(user, mode))

    async def delete_user(self, name: str) -> None:
        await self._timed("delete_user", self.inner.delete_user(name))

    async def put_token(self, token: JoinToken) -> None:
        await self._timed("put_token", self.inner.put_token(token))

    async def list_tokens(self, now: datetime) -> list[JoinToken]:
        return await self._timed("list_tokens", self.inner.list_tokens(now))

    async def delete_token(self, digest: str) -> None:
        await self._timed("delete_token", self.inner.delete_token(digest))

    async def consume_token(self, digest: str, kind: str, now: datetime) -> JoinToken:
        return await self._timed("consume_token", self.inner.consume_token(digest, kind, now))

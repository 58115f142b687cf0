"""`MemoryStore`: the Store port kept in process memory, for tests and benchmarks.

Each method runs to completion without awaiting, so on one event loop every call is
atomic — the same guarantee a transaction gives the durable adapters. Nothing survives
the process. `inject_failure` lets tests of the layers above rehearse an unavailable
store without a real database.
"""

from __future__ import annotations

import heapq
import uuid
from datetime import datetime, timedelta

from lockd.domain.errors import InvariantError, UnavailableError
from lockd.domain.events import Event, EventType
from lockd.domain.lock import Lock
from lockd.domain.ports import (
    LOG_RETENTION_AGE,
    LOG_RETENTION_COUNT,
    Committed,
    JoinToken,
    PutMode,
    Snapshot,
)
from lockd.domain.resources import Kind, ReplicatedResource, User, kind_of
from lockd.domain.unix_micros import require_aware
from lockd.store import rules

# Rebuild the expiry heap when stale entries outnumber live ones by this much + the slack.
_HEAP_SLACK = 1024


class MemoryStore:
    """The Store port in memory. Retention bounds are parameters so tests can shrink them."""

    def __init__(
        self,
        *,
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
    ) -> None:
        rules.check_retention(retention_age, retention_count)
        self._retention_age = retention_age
        self._retention_count = retention_count
        self._epoch = ""
        self._revision = 0
        self._resources: dict[Kind, dict[str, ReplicatedResource]] = {
            kind: {} for kind in rules.SNAPSHOT_KIND_ORDER
        }
        # The log is contiguous: _log[i].revision == _log[0].revision + i. A list (not a
        # deque) so events_since slices in O(limit); compaction trims a prefix.
        self._log: list[Event] = []
        # (expires, name) of locks that expire. Entries go stale when a lock is deleted
        # or re-put with another `expires`; expire_due skips those (lazy deletion).
        self._expiry: list[tuple[datetime, str]] = []
        self._users: dict[str, User] = {}
        self._tokens: dict[str, JoinToken] = {}  # by digest
        self._open = False
        self._healthy = False
        self._failure: str | None = None

    @property
    def type(self) -> str:
        return "memory"

    @property
    def healthy(self) -> bool:
        return self._healthy

    def inject_failure(self, reason: str = "injected failure") -> None:
        """Make every operation raise UnavailableError (as an IO failure would) until
        `clear_failure`."""
        self._failure = reason

    def clear_failure(self) -> None:
        self._failure = None

    async def check(self) -> bool:
        self._healthy = self._open and self._failure is None
        return self._healthy

    async def open(self) -> None:
        if not self._epoch:
            self._epoch = uuid.uuid4().hex
        self._open = True
        self._healthy = self._failure is None

    async def close(self) -> None:
        # Data is kept: a closed MemoryStore reopens with the same epoch and history.
        self._open = False
        self._healthy = False

    def _begin(self) -> None:
        """What an IO round trip would do: fail if the store cannot serve, else be healthy."""
        if not self._open:
            raise UnavailableError("store unavailable: store is not open")
        if self._failure is not None:
            self._healthy = False
            raise UnavailableError(f"store unavailable: {self._failure}")
        self._healthy = True

    async def snapshot(self) -> Snapshot:
        self._begin()
        resources: list[ReplicatedResource] = []
        for kind in rules.SNAPSHOT_KIND_ORDER:
            table = self._resources[kind]
            resources.extend(table[name] for name in sorted(table))
        return Snapshot(self._epoch, self._revision, tuple(resources))

    async def events_since(self, revision: int, limit: int) -> list[Event]:
        rules.check_events_args(revision, limit)
        self._begin()
        if revision >= self._revision:
            return []
        oldest = self._log[0].revision if self._log else None
        if oldest is None or oldest > revision + 1:
            raise rules.compacted(revision, oldest)
        start = revision + 1 - oldest
        return self._log[start : start + limit]

    async def put(self, resource: ReplicatedResource, mode: PutMode, now: datetime) -> Committed:
        require_aware(now)
        self._begin()
        kind = kind_of(resource)
        table = self._resources[kind]
        exists = resource.name in table
        rules.check_put(kind, resource.name, exists, mode)
        table[resource.name] = resource
        if isinstance(resource, Lock) and resource.expires is not None:
            self._push_expiry(resource.expires, resource.name)
        event = self._append(Event.put(self._revision + 1, resource, now))
        return Committed(event, created=not exists)

    async def delete(self, kind: Kind, name: str, now: datetime) -> Event:
        rules.check_replicated_kind(kind)
        require_aware(now)
        self._begin()
        table = self._resources[kind]
        if name not in table:
            raise rules.not_found(kind, name)
        del table[name]  # its expiry entry, if any, is now stale
        return self._append(Event.removal(self._revision + 1, EventType.DELETE, kind, name, now))

    async def expire_due(self, now: datetime) -> list[Event]:
        require_aware(now)
        self._begin()
        locks = self._resources[Kind.LOCK]
        events: list[Event] = []
        while self._expiry and self._expiry[0][0] <= now:
            expires, name = heapq.heappop(self._expiry)
            lock = locks.get(name)
            if not isinstance(lock, Lock) or lock.expires != expires:
                continue  # stale entry: deleted, or re-put with another expiry
            del locks[name]
            revision = self._revision + 1
            events.append(
                self._append(Event.removal(revision, EventType.EXPIRE, Kind.LOCK, name, now))
            )
        return events

    async def compact(self, now: datetime) -> int:
        require_aware(now)
        self._begin()
        cutoff = now - self._retention_age
        bound = self._revision - self._retention_count
        # Only a prefix goes, so the log stays contiguous even if the clock went back.
        dropped = 0
        for event in self._log:
            if event.revision > bound or event.time >= cutoff:
                break
            dropped += 1
        del self._log[:dropped]
        # Expired join tokens go too; they are not log entries, so not counted.
        for digest in [d for d, token in self._tokens.items() if token.expires <= now]:
            del self._tokens[digest]
        return dropped

    async def get_user(self, name: str) -> User | None:
        self._begin()
        return self._users.get(name)

    async def list_users(self) -> list[User]:
        self._begin()
        return [self._users[name] for name in sorted(self._users)]

    async def put_user(self, user: User, mode: PutMode) -> bool:
        self._begin()
        exists = user.name in self._users
        rules.check_user_put(user.name, exists, mode)
        self._users[user.name] = user
        return not exists

    async def delete_user(self, name: str) -> None:
        self._begin()
        if self._users.pop(name, None) is None:
            raise rules.not_found(Kind.USER, name)

    async def put_token(self, token: JoinToken) -> None:
        rules.check_token(token)
        self._begin()
        if token.digest in self._tokens:
            raise rules.token_exists()
        self._tokens[token.digest] = token

    async def list_tokens(self, now: datetime) -> list[JoinToken]:
        require_aware(now)
        self._begin()
        return sorted(
            (token for token in self._tokens.values() if now < token.expires),
            key=lambda token: token.digest,
        )

    async def delete_token(self, digest: str) -> None:
        self._begin()
        if self._tokens.pop(digest, None) is None:
            raise rules.token_not_found()

    async def consume_token(self, digest: str, kind: str, now: datetime) -> JoinToken:
        require_aware(now)
        self._begin()
        # No await from here on: the lookup and the removal are one atomic step.
        token = self._tokens.get(digest)
        if token is None:
            raise rules.token_refused()
        if rules.token_usable(token, kind, now):
            del self._tokens[digest]
            return token
        if token.expires <= now:
            del self._tokens[digest]  # useless from now on, whoever asks
        raise rules.token_refused()

    def _append(self, event: Event) -> Event:
        if event.revision != self._revision + 1:
            raise InvariantError(f"event {event.revision} after revision {self._revision}")
        self._log.append(event)
        self._revision = event.revision
        return event

    def _push_expiry(self, expires: datetime, name: str) -> None:
        heapq.heappush(self._expiry, (expires, name))
        live = len(self._resources[Kind.LOCK])
        if len(self._expiry) > 2 * live + _HEAP_SLACK:
            # Too many stale entries (locks re-put or deleted): rebuild from live locks.
            self._expiry = [
                (lock.expires, lock.name)
                for lock in self._resources[Kind.LOCK].values()
                if isinstance(lock, Lock) and lock.expires is not None
            ]
            heapq.heapify(self._expiry)

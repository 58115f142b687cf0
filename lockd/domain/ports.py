"""The ports the core needs from the outside world: a store, a clock and an audit sink.

Adapters implement these Protocols (`lockd.store.*`, `lockd.obs.audit`, `lockd.testing`).
Everything here is a declaration; nothing does IO.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from lockd.domain.events import Event
from lockd.domain.resources import Kind, ReplicatedResource, User

# The event log keeps at least this much history (DESIGN §3), then may be compacted.
LOG_RETENTION_AGE = timedelta(minutes=5)
LOG_RETENTION_COUNT = 100_000


class PutMode(StrEnum):
    CREATE = "create"  # an existing name is refused (AlreadyExistsError)
    UPDATE = "update"  # a missing name is refused (NotFoundError)
    UPSERT = "upsert"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every replicated resource at exactly (epoch, revision)."""

    epoch: str
    revision: int
    resources: tuple[ReplicatedResource, ...]


@dataclass(frozen=True, slots=True)
class Committed:
    """The outcome of a put: its event, and whether it created the resource."""

    event: Event
    created: bool


@dataclass(frozen=True, slots=True)
class JoinToken:
    """A one-time join token as the store keeps it: never the secret, only its digest.

    `digest` is the lowercase hex SHA-256 of the secret token, `kind` what it lets the
    bearer join as (e.g. "agent"), `expires` a timezone-aware UTC instant (the token
    works while `now < expires`), `created_by` who issued it.
    """

    digest: str
    kind: str
    expires: datetime
    created_by: str


class Store(Protocol):
    """Durable state of the auth server: replicated resources + event log, users, and
    one-time join tokens.

    Every change to a replicated resource commits, in the same transaction, one event
    with revision = previous + 1. IO failures raise UnavailableError and turn `healthy`
    false until an operation succeeds again.
    """

    @property
    def type(self) -> str:
        """`memory`, `sqlite` or `postgres`."""
        ...

    @property
    def healthy(self) -> bool:
        """False before `open`, after `close`, and after an IO failure until a later
        operation (or `check`) succeeds."""
        ...

    async def check(self) -> bool:
        """A cheap round trip to the backing storage; updates and returns `healthy`.

        Never raises for IO failures: the auth server polls it to notice recovery.
        """
        ...

    async def open(self) -> None:
        """Create or load the store; a fresh store gets a new random epoch."""
        ...

    async def close(self) -> None: ...

    async def snapshot(self) -> Snapshot:
        """Every stored replicated resource at one revision: the cluster auth preference
        first (only when it was set; absent means the default), then roles, then locks,
        each by name."""
        ...

    async def events_since(self, revision: int, limit: int) -> list[Event]:
        """Events after `revision`, ascending, at most `limit`.

        Raises CompactedError when events right after `revision` were compacted away;
        returns [] when `revision` is the current revision or later. A negative
        `revision` or a `limit` below 1 is a caller bug (ValueError).
        """
        ...

    async def put(self, resource: ReplicatedResource, mode: PutMode, now: datetime) -> Committed:
        """Commit a PUT event. CREATE refuses existing names; UPDATE refuses missing ones.

        The cluster auth preference is a singleton that always exists (as the default
        until set), so every mode upserts it; `created` is True only the first time.
        """
        ...

    async def delete(self, kind: Kind, name: str, now: datetime) -> Event:
        """Commit a DELETE event; NotFoundError when there is nothing to delete.

        Deleting the cluster auth preference resets it to the default (agents apply
        the DELETE that way); NotFoundError when it was never set.
        """
        ...

    async def expire_due(self, now: datetime) -> list[Event]:
        """Commit an EXPIRE event for each stored lock whose `expires <= now`.

        Ordered by (expires, name); one transaction per call; each event's time is `now`.
        """
        ...

    async def compact(self, now: datetime) -> int:
        """Drop log entries beyond both retention bounds; return how many were dropped.

        An entry goes when it is older than the age bound AND not among the newest
        count-bound entries; only the oldest prefix is dropped, so the log stays gapless.
        Expired join tokens (`expires <= now`) are deleted too; they are not counted in
        the return value, which is about the log only.
        """
        ...

    async def get_user(self, name: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def put_user(self, user: User, mode: PutMode) -> bool:
        """Store a user; returns True when created. Users are not replicated."""
        ...

    async def delete_user(self, name: str) -> None:
        """NotFoundError when there is no such user."""
        ...

    async def put_token(self, token: JoinToken) -> None:
        """Store a one-time join token; AlreadyExistsError when its digest is stored.

        Tokens are not replicated: no event, no revision change. A digest that is not
        64 lowercase hex digits is a caller bug (ValueError): the store must never be
        handed the secret itself.
        """
        ...

    async def list_tokens(self, now: datetime) -> list[JoinToken]:
        """The tokens still usable at `now` (`now < expires`), by digest."""
        ...

    async def delete_token(self, digest: str) -> None:
        """Revoke a token: NotFoundError("join token not found") when none has `digest`."""
        ...

    async def consume_token(self, digest: str, kind: str, now: datetime) -> JoinToken:
        """Delete and return the token with `digest` if it has this `kind` and
        `now < expires`, in one transaction: a token works exactly once, even when
        consumers race.

        Otherwise raise UnauthenticatedError("join token is invalid, expired or already
        used") — the same message whether the digest is unknown, the kind differs or the
        token expired, so a caller learns nothing about which. An expired token found
        this way is deleted as well; a live token of another kind is kept. Not
        replicated: no event, no revision change.
        """
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

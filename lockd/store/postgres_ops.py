"""The PostgreSQL transactions behind `PostgresStore`, as coroutines on one connection.

Every write to the replicated state first takes the lock of the one `meta` row, so
writers — in this process or in any other replica — run one at a time, each numbering
its events from the revision the previous one committed: gapless and in commit order.
A put or a delete is one call of a PL/pgSQL function (`postgres_schema`): one round
trip, atomic as one statement; the reaper's batch is a transaction that locks the row
with `FOR UPDATE`. Reads after that lock see everything the previous writer committed
(READ COMMITTED), so the existence checks and the reaper's due locks are read under it,
never before. Each write also announces its new revision with `pg_notify` on
`NOTIFY_CHANNEL`, which PostgreSQL delivers at commit, in commit order; a rolled-back or
refused write announces nothing.

Reads that need several statements (snapshot, events_since) run in one REPEATABLE READ
read-only transaction: every statement sees the same committed state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from lockd.domain.events import Event, EventType
from lockd.domain.ports import Committed, JoinToken, PutMode, Snapshot
from lockd.domain.resources import Kind, ReplicatedResource, User, kind_of
from lockd.domain.unix_micros import from_micros, to_micros
from lockd.store import codec, rules

NOTIFY_CHANNEL = "lockd_log"

# A connection of the pool (as the store passes it) or one of its own.
Conn = asyncpg.Connection | PoolConnectionProxy

_KIND_ORDER = [kind.value for kind in rules.SNAPSHOT_KIND_ORDER]
_EVENT_COLUMNS = "revision, type, kind, name, body, time"
_EventRow = tuple[int, str, str, str, str | None, int]


@asynccontextmanager
async def _reading(conn: Conn) -> AsyncIterator[tuple[str, int]]:
    """A consistent read-only snapshot; yields the (epoch, revision) it sees."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield await _meta(conn, "")


@asynccontextmanager
async def _writing(conn: Conn) -> AsyncIterator[int]:
    """A write transaction holding the revision counter's lock; yields the revision."""
    async with conn.transaction():
        _, revision = await _meta(conn, " FOR UPDATE")
        yield revision


async def _meta(conn: Conn, lock: str) -> tuple[str, int]:
    row = await conn.fetchrow(f"SELECT epoch, revision FROM meta WHERE id = 1{lock}")
    if row is None:
        raise asyncpg.DataError("meta row missing")
    return str(row[0]), int(row[1])


async def ping(conn: Conn) -> None:
    await conn.fetchval("SELECT revision FROM meta WHERE id = 1")


async def head(conn: Conn) -> tuple[str, int]:
    return await _meta(conn, "")


async def start_new_epoch(conn: Conn, expected: str, new: str) -> str:
    """Compare-and-set on the epoch: `new` if the stored one is `expected`."""
    stored: str = await conn.fetchval(
        "UPDATE meta SET epoch = CASE WHEN epoch = $1 THEN $2 ELSE epoch END "
        "WHERE id = 1 RETURNING epoch",
        expected,
        new,
    )
    return stored


async def snapshot(conn: Conn) -> Snapshot:
    async with _reading(conn) as (epoch, revision):
        rows = await conn.fetch(
            "SELECT body FROM resources WHERE kind = ANY($1::text[]) "
            "ORDER BY array_position($1::text[], kind), name",
            _KIND_ORDER,
        )
    return Snapshot(epoch, revision, tuple(codec.load_replicated(row[0]) for row in rows))


async def events_since(conn: Conn, revision: int, limit: int) -> list[Event]:
    async with _reading(conn) as (_, current):
        if revision >= current:
            return []
        rows = await conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE revision > $1 ORDER BY revision LIMIT $2",
            revision,
            limit,
        )
        if not rows or rows[0][0] != revision + 1:
            oldest = await conn.fetchval("SELECT MIN(revision) FROM events")
            raise rules.compacted(revision, oldest)
    return [codec.event_from_row(*row) for row in rows]


async def _log(conn: Conn, rows: list[_EventRow]) -> None:
    """Append a batch of events (numbered from the locked revision + 1), move the counter
    to the last one and announce it."""
    await conn.executemany(
        f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)", rows
    )
    # One round trip for both: the counter moves and the commit announces it.
    await conn.execute(
        "UPDATE meta SET revision = $1 WHERE id = 1 RETURNING pg_notify($2, revision::text)",
        rows[-1][0],
        NOTIFY_CHANNEL,
    )


async def put(conn: Conn, resource: ReplicatedResource, mode: PutMode, now: datetime) -> Committed:
    kind = kind_of(resource)
    body = codec.dump_resource(resource)
    # The preference is a singleton that always exists: every mode upserts it.
    stored_mode = PutMode.UPSERT if kind is Kind.CLUSTER_AUTH_PREFERENCE else mode
    row = await conn.fetchrow(
        "SELECT new_revision, existed FROM lockd_put($1, $2, $3, $4, $5, $6, $7, $8)",
        kind.value,
        resource.name,
        body,
        codec.expires_micros(resource),
        stored_mode.value,
        EventType.PUT.value,
        to_micros(now),
        NOTIFY_CHANNEL,
    )
    if row is None:
        raise asyncpg.DataError("lockd_put returned no row")
    revision, existed = row
    if revision is None:
        rules.check_put(kind, resource.name, existed, mode)  # raises: the refusal
    return Committed(Event.put(revision, resource, now), created=not existed)


async def delete(conn: Conn, kind: Kind, name: str, now: datetime) -> Event:
    revision = await conn.fetchval(
        "SELECT lockd_delete($1, $2, $3, $4, $5)",
        kind.value,
        name,
        EventType.DELETE.value,
        to_micros(now),
        NOTIFY_CHANNEL,
    )
    if revision is None:
        raise rules.not_found(kind, name)
    return Event.removal(revision, EventType.DELETE, kind, name, now)


# The partial index resources_expires serves both: the reaper asks every second.
_ANY_DUE = "SELECT 1 FROM resources WHERE expires IS NOT NULL AND expires <= $1 LIMIT 1"
_DUE = (
    "SELECT name FROM resources WHERE expires IS NOT NULL AND expires <= $1 ORDER BY expires, name"
)


async def expire_due(conn: Conn, now: datetime) -> list[Event]:
    now_us = to_micros(now)
    # Cheap and lock-free when nothing is due (almost always): no write, no counter lock.
    if await conn.fetchval(_ANY_DUE, now_us) is None:
        return []
    async with _writing(conn) as current:
        # Read again under the counter's lock: a lock another replica expired (or a
        # writer deleted) in the meantime is gone, so no EXPIRE is ever committed twice.
        names = [row[0] for row in await conn.fetch(_DUE, now_us)]
        if not names:
            return []
        await conn.execute(
            "DELETE FROM resources WHERE kind = $1 AND name = ANY($2::text[])",
            Kind.LOCK.value,
            names,
        )
        rows: list[_EventRow] = [
            (current + i, EventType.EXPIRE.value, Kind.LOCK.value, name, None, now_us)
            for i, name in enumerate(names, start=1)
        ]
        await _log(conn, rows)
    return [Event.removal(row[0], EventType.EXPIRE, Kind.LOCK, row[3], now) for row in rows]


async def compact(conn: Conn, now: datetime, age: timedelta, count: int) -> int:
    now_us = to_micros(now)
    cutoff_us = to_micros(now - age)
    async with conn.transaction():
        # Expired join tokens go too; they are not log entries, so not counted.
        await conn.execute("DELETE FROM tokens WHERE expires <= $1", now_us)
        # No counter lock: a writer committing meanwhile only adds newer events, and a
        # bound from an older revision drops less, never a needed event.
        _, current = await _meta(conn, "")
        bound = current - count
        if bound <= 0:
            return 0
        # Drop a prefix only, so the log stays contiguous even if the clock went back.
        young = await conn.fetchval(
            "SELECT revision FROM events WHERE revision <= $1 AND time >= $2 "
            "ORDER BY revision LIMIT 1",
            bound,
            cutoff_us,
        )
        if young is not None:
            bound = young - 1
        status = await conn.execute("DELETE FROM events WHERE revision <= $1", bound)
    return _row_count(status)


def _row_count(status: str) -> int:
    """The count in a command status such as `DELETE 3`."""
    return int(status.rsplit(" ", 1)[-1])


async def get_user(conn: Conn, name: str) -> User | None:
    body = await conn.fetchval("SELECT body FROM users WHERE name = $1", name)
    return None if body is None else codec.load_user(body)


async def list_users(conn: Conn) -> list[User]:
    rows = await conn.fetch("SELECT body FROM users ORDER BY name")
    return [codec.load_user(row[0]) for row in rows]


async def put_user(conn: Conn, user: User, mode: PutMode) -> bool:
    body = codec.dump_resource(user)
    async with conn.transaction():
        # FOR UPDATE: two replicas creating one user cannot both see it missing.
        exists = (
            await conn.fetchval("SELECT 1 FROM users WHERE name = $1 FOR UPDATE", user.name)
            is not None
        )
        rules.check_user_put(user.name, exists, mode)
        inserted = await conn.fetchval(
            "INSERT INTO users (name, body) VALUES ($1, $2) ON CONFLICT (name) "
            "DO UPDATE SET body = EXCLUDED.body RETURNING (xmax = 0)",
            user.name,
            body,
        )
        if mode is PutMode.CREATE and not inserted:
            # Created by a concurrent transaction after our check: refuse, like a rerun would.
            raise rules.already_exists(Kind.USER, user.name)
    return bool(inserted)


async def delete_user(conn: Conn, name: str) -> None:
    if await conn.fetchval("DELETE FROM users WHERE name = $1 RETURNING 1", name) is None:
        raise rules.not_found(Kind.USER, name)


async def put_token(conn: Conn, token: JoinToken) -> None:
    inserted = await conn.fetchval(
        "INSERT INTO tokens (digest, kind, expires, created_by) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (digest) DO NOTHING RETURNING 1",
        token.digest,
        token.kind,
        to_micros(token.expires),
        token.created_by,
    )
    if inserted is None:
        raise rules.token_exists()


async def list_tokens(conn: Conn, now: datetime) -> list[JoinToken]:
    rows = await conn.fetch(
        "SELECT digest, kind, expires, created_by FROM tokens WHERE expires > $1 ORDER BY digest",
        to_micros(now),
    )
    return [JoinToken(str(row[0]), str(row[1]), from_micros(row[2]), str(row[3])) for row in rows]


async def delete_token(conn: Conn, digest: str) -> None:
    if await conn.fetchval("DELETE FROM tokens WHERE digest = $1 RETURNING 1", digest) is None:
        raise rules.token_not_found()


async def consume_token(conn: Conn, digest: str, kind: str, now: datetime) -> JoinToken:
    async with conn.transaction():
        # FOR UPDATE: a concurrent consumer waits, then finds the row gone.
        row = await conn.fetchrow(
            "SELECT kind, expires, created_by FROM tokens WHERE digest = $1 FOR UPDATE", digest
        )
        if row is None:
            raise rules.token_refused()
        token = JoinToken(digest, str(row[0]), from_micros(row[1]), str(row[2]))
        usable = rules.token_usable(token, kind, now)
        if usable or token.expires <= now:
            # An expired token is useless from now on, whoever asks: it goes as well.
            await conn.execute("DELETE FROM tokens WHERE digest = $1", digest)
    # Raised after the commit, so the removal of an expired token sticks.
    if not usable:
        raise rules.token_refused()
    return token

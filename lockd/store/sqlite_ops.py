"""The SQLite schema and transactions behind `SqliteStore`, as plain synchronous functions.

Every function here takes the connection and runs on the store's one worker thread
(`lockd.store.sqlite` guarantees that); none of them may be called on the event loop.
Writes run in `BEGIN IMMEDIATE` so the write lock is taken up front (no deadlock-prone
upgrade from a read lock), and the event row, the resource row and the revision counter
change in the same transaction, or none of them do.

The schema is versioned by PRAGMA user_version: a fresh database gets the base schema
(version 1) and then every migration, exactly as an old database is upgraded, so the two
can never differ.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from lockd.domain.events import Event, EventType
from lockd.domain.ports import Committed, JoinToken, PutMode, Snapshot
from lockd.domain.resources import Kind, ReplicatedResource, User, kind_of
from lockd.domain.unix_micros import from_micros, to_micros
from lockd.store import codec, rules

SCHEMA_VERSION = 2  # PRAGMA user_version

# The schema of version 1; later versions are reached through _MIGRATIONS.
_BASE_SCHEMA = (
    # One row: the history's epoch and its last committed revision. The revision lives
    # here, not in MAX(events.revision), because compaction may empty the log.
    """CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        epoch TEXT NOT NULL,
        revision INTEGER NOT NULL
    )""",
    # Replicated resources. `expires` (µs since the Unix epoch) is set for expiring
    # locks only, so the partial index below holds exactly what the reaper looks for.
    """CREATE TABLE resources (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT NOT NULL,
        expires INTEGER,
        PRIMARY KEY (kind, name)
    ) WITHOUT ROWID""",
    "CREATE INDEX resources_expires ON resources (expires, name) WHERE expires IS NOT NULL",
    # The event log; `time` is µs since the Unix epoch. body is NULL for DELETE/EXPIRE.
    """CREATE TABLE events (
        revision INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        body TEXT,
        time INTEGER NOT NULL
    )""",
    "CREATE TABLE users (name TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID",
)

# _MIGRATIONS[v]: the statements that take a version v - 1 database to version v.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # One-time join tokens, by the SHA-256 of the secret (never the secret itself);
    # `expires` is µs since the Unix epoch. Not replicated: no events.
    2: (
        """CREATE TABLE tokens (
            digest TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            expires INTEGER NOT NULL,
            created_by TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
}

# Served by the partial index resources_expires alone (tests check the query plan): the
# reaper runs every second and must not scan the locks that are not due.
EXPIRE_DUE_QUERY = (
    "SELECT name FROM resources WHERE expires IS NOT NULL AND expires <= ? ORDER BY expires, name"
)

_EVENT_COLUMNS = "revision, type, kind, name, body, time"
_EventRow = tuple[int, str, str, str, str | None, int]


def connect(
    path: Path, busy_timeout: float, factory: type[sqlite3.Connection]
) -> sqlite3.Connection:
    """Open (creating if needed) the database file and make sure the schema is there."""
    if not path.exists():
        # The file holds who is locked out and why: readable by the server's user only.
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    # isolation_level=None: the module starts no transactions; ours are explicit.
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, factory=factory)
    try:
        (journal,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(journal).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot use the WAL journal (got {journal!r})")
        # FULL: an acknowledged lock must survive a power cut (DESIGN §5).
        conn.execute("PRAGMA synchronous=FULL")
        _init_schema(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _init_schema(conn: sqlite3.Connection) -> None:
    with write_transaction(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise rules.schema_too_new(version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            for statement in _BASE_SCHEMA:
                conn.execute(statement)
            # A fresh store starts a new history: a new random epoch.
            conn.execute(
                "INSERT INTO meta (id, epoch, revision) VALUES (1, ?, 0)", (uuid.uuid4().hex,)
            )
            version = 1
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                conn.execute(statement)
        # In the same transaction as the changes: a failed upgrade leaves the old version.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the write lock up front (no upgrade deadlocks)."""
    with _transaction(conn, "BEGIN IMMEDIATE"):
        yield


@contextlib.contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One read snapshot (WAL): every query inside sees the same committed state."""
    with _transaction(conn, "BEGIN"):
        yield


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        # The original error is the one worth reporting.
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()


def ping(conn: sqlite3.Connection) -> None:
    """Read the meta row: proves the file is there and readable (not that it is writable)."""
    conn.execute("SELECT revision FROM meta WHERE id = 1").fetchone()


def _meta(conn: sqlite3.Connection) -> tuple[str, int]:
    row = conn.execute("SELECT epoch, revision FROM meta WHERE id = 1").fetchone()
    if row is None:
        raise sqlite3.DatabaseError("meta row missing")
    return str(row[0]), int(row[1])


def head(conn: sqlite3.Connection) -> tuple[str, int]:
    """The log's epoch and latest revision (what a reader tailing the file compares)."""
    return _meta(conn)


def snapshot(conn: sqlite3.Connection) -> Snapshot:
    with read_transaction(conn):
        epoch, revision = _meta(conn)
        resources: list[ReplicatedResource] = []
        for kind in rules.SNAPSHOT_KIND_ORDER:
            rows = conn.execute(
                "SELECT body FROM resources WHERE kind = ? ORDER BY name", (kind.value,)
            )
            resources.extend(codec.load_replicated(body) for (body,) in rows)
    return Snapshot(epoch, revision, tuple(resources))


def events_since(conn: sqlite3.Connection, revision: int, limit: int) -> list[Event]:
    with read_transaction(conn):
        _, current = _meta(conn)
        if revision >= current:
            return []
        rows: list[_EventRow] = conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE revision > ? ORDER BY revision LIMIT ?",
            (revision, limit),
        ).fetchall()
        if not rows or rows[0][0] != revision + 1:
            oldest = conn.execute("SELECT MIN(revision) FROM events").fetchone()[0]
            raise rules.compacted(revision, oldest)
    return [codec.event_from_row(*row) for row in rows]


def _exists(conn: sqlite3.Connection, kind: Kind, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM resources WHERE kind = ? AND name = ?", (kind.value, name)
    ).fetchone()
    return row is not None


def _log(conn: sqlite3.Connection, rows: list[_EventRow]) -> None:
    """Append events (already numbered from the current revision + 1) and advance it."""
    conn.executemany(f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("UPDATE meta SET revision = ? WHERE id = 1", (rows[-1][0],))


def put(
    conn: sqlite3.Connection, resource: ReplicatedResource, mode: PutMode, now: datetime
) -> Committed:
    kind = kind_of(resource)
    body = codec.dump_resource(resource)
    now_us = to_micros(now)
    with write_transaction(conn):
        exists = _exists(conn, kind, resource.name)
        rules.check_put(kind, resource.name, exists, mode)
        _, current = _meta(conn)
        conn.execute(
            "INSERT OR REPLACE INTO resources (kind, name, body, expires) VALUES (?, ?, ?, ?)",
            (kind.value, resource.name, body, codec.expires_micros(resource)),
        )
        revision = current + 1
        _log(conn, [(revision, EventType.PUT.value, kind.value, resource.name, body, now_us)])
    return Committed(Event.put(revision, resource, now), created=not exists)


def delete(conn: sqlite3.Connection, kind: Kind, name: str, now: datetime) -> Event:
    now_us = to_micros(now)
    with write_transaction(conn):
        deleted = conn.execute(
            "DELETE FROM resources WHERE kind = ? AND name = ?", (kind.value, name)
        ).rowcount
        if not deleted:
            raise rules.not_found(kind, name)
        _, current = _meta(conn)
        revision = current + 1
        _log(conn, [(revision, EventType.DELETE.value, kind.value, name, None, now_us)])
    return Event.removal(revision, EventType.DELETE, kind, name, now)


def expire_due(conn: sqlite3.Connection, now: datetime) -> list[Event]:
    now_us = to_micros(now)
    with write_transaction(conn):
        names = [name for (name,) in conn.execute(EXPIRE_DUE_QUERY, (now_us,))]
        if not names:
            return []  # nothing written: COMMIT of an empty transaction costs no fsync
        _, current = _meta(conn)
        conn.executemany(
            "DELETE FROM resources WHERE kind = ? AND name = ?",
            [(Kind.LOCK.value, name) for name in names],
        )
        rows: list[_EventRow] = [
            (current + i, EventType.EXPIRE.value, Kind.LOCK.value, name, None, now_us)
            for i, name in enumerate(names, start=1)
        ]
        _log(conn, rows)
    return [Event.removal(row[0], EventType.EXPIRE, Kind.LOCK, row[3], now) for row in rows]


def compact(conn: sqlite3.Connection, now: datetime, age: timedelta, count: int) -> int:
    now_us = to_micros(now)
    cutoff_us = to_micros(now - age)
    with write_transaction(conn):
        # Expired join tokens go too; they are not log entries, so not counted.
        conn.execute("DELETE FROM tokens WHERE expires <= ?", (now_us,))
        _, current = _meta(conn)
        bound = current - count
        if bound <= 0:
            return 0
        # Drop a prefix only, so the log stays contiguous even if the clock went back:
        # stop before the first event that is still young.
        young = conn.execute(
            "SELECT revision FROM events WHERE revision <= ? AND time >= ? "
            "ORDER BY revision LIMIT 1",
            (bound, cutoff_us),
        ).fetchone()
        if young is not None:
            bound = young[0] - 1
        dropped: int = conn.execute("DELETE FROM events WHERE revision <= ?", (bound,)).rowcount
    return dropped


def get_user(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute("SELECT body FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else codec.load_user(row[0])


def list_users(conn: sqlite3.Connection) -> list[User]:
    return [
        codec.load_user(body) for (body,) in conn.execute("SELECT body FROM users ORDER BY name")
    ]


def put_user(conn: sqlite3.Connection, user: User, mode: PutMode) -> bool:
    body = codec.dump_resource(user)
    with write_transaction(conn):
        exists = (
            conn.execute("SELECT 1 FROM users WHERE name = ?", (user.name,)).fetchone() is not None
        )
        rules.check_user_put(user.name, exists, mode)
        conn.execute("INSERT OR REPLACE INTO users (name, body) VALUES (?, ?)", (user.name, body))
    return not exists


def delete_user(conn: sqlite3.Connection, name: str) -> None:
    with write_transaction(conn):
        if not conn.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount:
            raise rules.not_found(Kind.USER, name)


def put_token(conn: sqlite3.Connection, token: JoinToken) -> None:
    row = (token.digest, token.kind, to_micros(token.expires), token.created_by)
    with write_transaction(conn):
        inserted = conn.execute(
            "INSERT INTO tokens (digest, kind, expires, created_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (digest) DO NOTHING",
            row,
        ).rowcount
        if not inserted:
            raise rules.token_exists()


def list_tokens(conn: sqlite3.Connection, now: datetime) -> list[JoinToken]:
    rows = conn.execute(
        "SELECT digest, kind, expires, created_by FROM tokens WHERE expires > ? ORDER BY digest",
        (to_micros(now),),
    ).fetchall()
    return [JoinToken(str(row[0]), str(row[1]), from_micros(row[2]), str(row[3])) for row in rows]


def delete_token(conn: sqlite3.Connection, digest: str) -> None:
    with write_transaction(conn):
        deleted = conn.execute("DELETE FROM tokens WHERE digest = ?", (digest,)).rowcount
    if not deleted:
        raise rules.token_not_found()


def consume_token(conn: sqlite3.Connection, digest: str, kind: str, now: datetime) -> JoinToken:
    # BEGIN IMMEDIATE: no other connection can consume the same row between our read
    # and our delete, so a token works exactly once even across processes.
    with write_transaction(conn):
        row = conn.execute(
            "SELECT kind, expires, created_by FROM tokens WHERE digest = ?", (digest,)
        ).fetchone()
        if row is None:
            raise rules.token_refused()
        token = JoinToken(digest, str(row[0]), from_micros(row[1]), str(row[2]))
        usable = rules.token_usable(token, kind, now)
        if usable or token.expires <= now:
            # An expired token is useless from now on, whoever asks: it goes as well.
            conn.execute("DELETE FROM tokens WHERE digest = ?", (digest,))
    # Raised after the commit, so the removal of an expired token sticks.
    if not usable:
        raise rules.token_refused()
    return token

"""What only the SQLite adapter promises: its thread, its file, its index, its rollbacks."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from lockd.domain.errors import UnauthenticatedError, UnavailableError, ValidationError
from lockd.domain.ports import PutMode
from lockd.domain.resources import User
from lockd.store import SQLITE_FILE_NAME, MemoryStore, SqliteStore, build_store
from lockd.store.sqlite_ops import EXPIRE_DUE_QUERY, SCHEMA_VERSION
from tests.contract.helpers import T0, all_events, at, join_token, lock


def recording_connection(threads: set[int]) -> type[sqlite3.Connection]:
    """A connection class that notes the thread of every statement."""

    class Recording(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            threads.add(threading.get_ident())
            return super().execute(sql, parameters)

    return Recording


class DiskFault:
    """Makes the next statement starting with `statement` fail as a dying disk would."""

    def __init__(self, statement: str) -> None:
        self.statement = statement
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    def trip(self, sql: str) -> None:
        if self.armed and sql.startswith(self.statement):
            self.armed = False
            raise sqlite3.OperationalError("disk I/O error")

    def connection_class(self) -> type[sqlite3.Connection]:
        fault = self

        class Faulty(sqlite3.Connection):
            def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
                fault.trip(sql)
                return super().execute(sql, parameters)

            def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
                fault.trip(sql)
                return super().executemany(sql, parameters)

        return Faulty


async def test_all_sqlite_work_runs_on_one_thread_off_the_event_loop(tmp_path: Path) -> None:
    """Every statement runs on the store's single worker thread, never the loop's."""
    threads: set[int] = set()
    store = SqliteStore(tmp_path / "t.db", connection_factory=recording_connection(threads))
    await store.open()
    await store.put(lock("a", expires=at(1)), PutMode.CREATE, T0)
    await store.expire_due(at(1))
    await store.snapshot()
    await store.events_since(0, 10)
    await store.close()
    assert len(threads) == 1
    assert threading.get_ident() not in threads


async def test_head_is_the_epoch_and_revision_a_second_reader_of_the_file_sees(
    tmp_path: Path,
) -> None:
    """`head()` (what a watch worker tails the file by) follows the writer's commits, read
    through a second store on the same file, and agrees with its snapshot."""
    writer, reader = SqliteStore(tmp_path / "t.db"), SqliteStore(tmp_path / "t.db")
    await writer.open()
    await reader.open()
    try:
        epoch, revision = await reader.head()
        await writer.put(lock("a"), PutMode.CREATE, T0)
        await writer.put(lock("b"), PutMode.CREATE, T0)
        snapshot = await writer.snapshot()
        assert await reader.head() == (epoch, revision + 2) == (snapshot.epoch, snapshot.revision)
    finally:
        await reader.close()
        await writer.close()


@pytest.mark.parametrize("statement", ["INSERT INTO events", "UPDATE meta", "COMMIT"])
async def test_an_io_error_mid_transaction_leaves_no_trace(tmp_path: Path, statement: str) -> None:
    """A disk error at any step of a write rolls the whole change back: no half commit."""
    fault = DiskFault(statement)
    store = SqliteStore(tmp_path / "t.db", connection_factory=fault.connection_class())
    await store.open()
    await store.put(lock("a"), PutMode.CREATE, T0)
    fault.arm()
    with pytest.raises(UnavailableError, match=r"^store unavailable: disk I/O error$"):
        await store.put(lock("b"), PutMode.CREATE, at(1))
    assert not store.healthy
    snapshot = await store.snapshot()
    assert store.healthy
    assert (snapshot.revision, [r.name for r in snapshot.resources]) == (1, ["a"])
    assert (await store.put(lock("b"), PutMode.CREATE, at(2))).event.revision == 2
    assert [event.name for event in await all_events(store)] == ["a", "b"]
    await store.close()


async def test_an_io_error_while_expiring_expires_nothing(tmp_path: Path) -> None:
    """A failed expiry batch commits none of its events; the next call expires them all."""
    fault = DiskFault("INSERT INTO events")
    store = SqliteStore(tmp_path / "t.db", connection_factory=fault.connection_class())
    await store.open()
    for name in "abc":
        await store.put(lock(name, expires=at(1)), PutMode.CREATE, T0)
    fault.arm()
    with pytest.raises(UnavailableError):
        await store.expire_due(at(2))
    assert len((await store.snapshot()).resources) == 3
    assert [event.revision for event in await store.expire_due(at(2))] == [4, 5, 6]
    await store.close()


async def test_expiry_query_is_served_by_the_expires_index(tmp_path: Path) -> None:
    """The reaper's query walks the partial expires index: no table scan, no sort."""
    store = SqliteStore(tmp_path / "t.db")
    await store.open()
    await store.put(lock("a", expires=at(1)), PutMode.CREATE, T0)
    await store.close()
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {EXPIRE_DUE_QUERY}", (0,)).fetchall()
    finally:
        conn.close()
    plan = " | ".join(row[3] for row in rows)
    assert "INDEX resources_expires" in plan
    assert "TEMP B-TREE" not in plan


async def test_database_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    """The file is created 0600 (it says who is locked out) and journals with WAL."""
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    """Opening garbage raises UnavailableError naming the file, and stays unhealthy."""
    path = tmp_path / "t.db"
    path.write_bytes(b"this is not an sqlite database at all\n" * 200)
    store = SqliteStore(path)
    with pytest.raises(UnavailableError, match=r"^store unavailable: cannot open .*t\.db"):
        await store.open()
    assert not store.healthy


async def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    """A database written by a newer lockd is not touched: UnavailableError on open."""
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    store = SqliteStore(path)
    with pytest.raises(UnavailableError, match="schema version 99 is newer"):
        await store.open()
    assert not store.healthy


def test_build_store_picks_the_adapter_by_type(tmp_path: Path) -> None:
    """`memory` and `sqlite` (at the given path, its directory created 0700); others refused."""
    path = tmp_path / "data" / SQLITE_FILE_NAME
    assert isinstance(build_store("memory", path), MemoryStore)
    sqlite_store = build_store("sqlite", path)
    assert isinstance(sqlite_store, SqliteStore)
    assert sqlite_store.path == path
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with pytest.raises(ValidationError, match=r'^store type "pg" not supported'):
        build_store("pg", path)


def downgrade_to_version_1(path: Path) -> None:
    """Make a current database look like one written by the lockd before join tokens."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TABLE tokens")
        conn.execute("PRAGMA user_version = 1")
    finally:
        conn.close()


def schema_of(path: Path) -> tuple[int, list[tuple[str, str]]]:
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        rows = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()
    return version, rows


async def test_a_version_1_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    """A database from before join tokens opens, keeps everything, and gains the table."""
    path = tmp_path / "t.db"
    old = SqliteStore(path)
    await old.open()
    await old.put(lock("a", expires=at(30)), PutMode.CREATE, T0)
    await old.put_user(User("bob", ("dev",)), PutMode.CREATE)
    before, log = await old.snapshot(), await all_events(old)
    await old.close()
    downgrade_to_version_1(path)
    assert schema_of(path)[0] == 1

    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.snapshot() == before
        assert await all_events(store) == log
        assert await store.list_users() == [User("bob", ("dev",))]
        await store.put_token(join_token())
        assert await store.consume_token(join_token().digest, "agent", T0) == join_token()
    finally:
        await store.close()
    assert schema_of(path)[0] == SCHEMA_VERSION == 2


async def test_an_upgraded_database_has_exactly_the_fresh_schema(tmp_path: Path) -> None:
    """Migrating from version 1 yields the same tables and indexes as a new database."""
    for name in ("fresh", "upgraded"):
        store = SqliteStore(tmp_path / f"{name}.db")
        await store.open()
        await store.close()
    downgrade_to_version_1(tmp_path / "upgraded.db")
    upgraded = SqliteStore(tmp_path / "upgraded.db")
    await upgraded.open()
    await upgraded.close()
    assert schema_of(tmp_path / "upgraded.db") == schema_of(tmp_path / "fresh.db")


async def test_a_failed_upgrade_leaves_the_old_version_to_retry(tmp_path: Path) -> None:
    """An IO error mid-migration rolls it back whole; the next open upgrades cleanly."""
    path = tmp_path / "t.db"
    store = SqliteStore(path)
    await store.open()
    await store.put(lock("a"), PutMode.CREATE, T0)
    await store.close()
    downgrade_to_version_1(path)
    fault = DiskFault("PRAGMA user_version = 2")
    fault.arm()
    failing = SqliteStore(path, connection_factory=fault.connection_class())
    with pytest.raises(UnavailableError, match="disk I/O error"):
        await failing.open()
    version, rows = schema_of(path)
    assert version == 1
    assert "tokens" not in [name for name, _ in rows]
    retry = SqliteStore(path)
    await retry.open()
    try:
        assert [resource.name for resource in (await retry.snapshot()).resources] == ["a"]
        await retry.put_token(join_token())
    finally:
        await retry.close()


async def test_an_io_error_while_consuming_leaves_the_token_usable(tmp_path: Path) -> None:
    """A disk error at the delete or the commit of a consume uses nothing up."""
    for statement in ("DELETE FROM tokens", "COMMIT"):
        fault = DiskFault(statement)
        store = SqliteStore(
            tmp_path / f"{statement[:6]}.db", connection_factory=fault.connection_class()
        )
        await store.open()
        await store.put_token(join_token())
        fault.arm()
        with pytest.raises(UnavailableError, match=r"^store unavailable: disk I/O error$"):
            await store.consume_token(join_token().digest, "agent", T0)
        assert not store.healthy
        assert await store.consume_token(join_token().digest, "agent", T0) == join_token()
        assert store.healthy
        await store.close()


async def test_two_connections_racing_for_one_token_get_it_once(tmp_path: Path) -> None:
    """Two stores on one file (two connections, two threads): one token, one winner."""
    path = tmp_path / "t.db"
    stores = [SqliteStore(path) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        await stores[0].put_token(join_token())
        results = await asyncio.gather(
            *(stores[i % 2].consume_token(join_token().digest, "agent", T0) for i in range(20)),
            return_exceptions=True,
        )
    finally:
        for store in stores:
            await store.close()
    assert results.count(join_token()) == 1
    assert sum(isinstance(result, UnauthenticatedError) for result in results) == 19

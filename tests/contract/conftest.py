"""Fixtures of the store contract suite: one harness per adapter, every test runs on each.

To add an adapter, write a harness class with `make` and `fault`, add a builder for it
to `HARNESSES`, and its name to `DURABLE` when its data outlives the store object.
The PostgreSQL harness runs on the session's throwaway server (tests/postgres_server.py)
with a fresh database per location, and skips with the reason when there is none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pytest

from lockd.domain.ports import LOG_RETENTION_AGE, LOG_RETENTION_COUNT, Store
from lockd.store import MemoryStore, SqliteStore
from lockd.store.postgres import PostgresOptions, PostgresStore
from tests.postgres_server import PostgresServer


class Harness(Protocol):
    """How the suite makes, reopens and breaks one kind of store."""

    name: str
    # True when a new store made for the same `location` sees the old one's data.
    durable: bool

    def make(
        self,
        *,
        location: str = "main",
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
    ) -> Store:
        """An unopened store; durable harnesses back each `location` with its own data."""
        ...

    def fault(self, store: Store) -> AbstractContextManager[None]:
        """While active, writes to `store` fail the way a real IO failure makes them fail."""
        ...


class MemoryHarness:
    name = "memory"
    durable = False

    def make(
        self,
        *,
        location: str = "main",
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
    ) -> Store:
        return MemoryStore(retention_age=retention_age, retention_count=retention_count)

    @contextmanager
    def fault(self, store: Store) -> Iterator[None]:
        assert isinstance(store, MemoryStore)
        store.inject_failure("disk I/O error")
        try:
            yield
        finally:
            store.clear_failure()


class SqliteHarness:
    name = "sqlite"
    durable = True
    # Short, so a write blocked by the fault's lock gives up quickly; no test relies on
    # the duration (nothing else ever holds the lock).
    BUSY_TIMEOUT = 0.05

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, location: str = "main") -> Path:
        return self.directory / f"{location}.db"

    def make(
        self,
        *,
        location: str = "main",
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
    ) -> Store:
        return SqliteStore(
            self.path(location),
            retention_age=retention_age,
            retention_count=retention_count,
            busy_timeout=self.BUSY_TIMEOUT,
        )

    @contextmanager
    def fault(self, store: Store) -> Iterator[None]:
        # A real failure, not a mock: another process holds the write lock, so the
        # store's writes end in "database is locked" once the busy timeout passes.
        assert isinstance(store, SqliteStore)
        other = sqlite3.connect(store.path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            yield
        finally:
            other.rollback()
            other.close()


class PostgresHarness:
    name = "postgres"
    durable = True

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.databases: dict[str, str] = {}  # location -> database

    def make(
        self,
        *,
        location: str = "main",
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
    ) -> Store:
        if location not in self.databases:
            self.databases[location] = self.server.create_database()
        options = PostgresOptions(
            dsn=self.server.dsn(self.databases[location]), min_pool=1, max_pool=4, sslmode="disable"
        )
        return PostgresStore(options, retention_age=retention_age, retention_count=retention_count)

    @contextmanager
    def fault(self, store: Store) -> Iterator[None]:
        # A real outage of this store's database, as a DBA's emergency stop makes it:
        # every session is terminated and new connections are refused until it ends.
        assert isinstance(store, PostgresStore)
        database = next(
            db for db in self.databases.values() if store.options.dsn.endswith(f"/{db}")
        )
        self.server.psql(
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false; '
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
            f"WHERE datname = '{database}'"
        )
        try:
            yield
        finally:
            self.server.psql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    def recycle(self) -> None:
        for database in self.databases.values():
            self.server.recycle_database(database)


def postgres_harness(request: pytest.FixtureRequest, _: Path) -> Harness:
    harness = PostgresHarness(request.getfixturevalue("postgres_server"))
    request.addfinalizer(harness.recycle)
    return harness


HARNESSES: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {
    "memory": lambda _request, _path: MemoryHarness(),
    "sqlite": lambda _request, path: SqliteHarness(path),
    "postgres": postgres_harness,
}
DURABLE = ["sqlite", "postgres"]


@pytest.fixture(params=list(HARNESSES))
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return HARNESSES[request.param](request, tmp_path)


@pytest.fixture(params=DURABLE)
def durable_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return HARNESSES[request.param](request, tmp_path)


class StoreOpener:
    """Opens stores from a harness and closes every one of them at teardown."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self._opened: list[Store] = []

    async def __call__(
        self,
        *,
        location: str = "main",
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
    ) -> Store:
        store = self.harness.make(
            location=location, retention_age=retention_age, retention_count=retention_count
        )
        await store.open()
        self._opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in reversed(self._opened):
            await store.close()


@pytest.fixture
async def open_store(harness: Harness) -> AsyncIterator[StoreOpener]:
    opener = StoreOpener(harness)
    yield opener
    await opener.close_all()


@pytest.fixture
async def open_durable(durable_harness: Harness) -> AsyncIterator[StoreOpener]:
    opener = StoreOpener(durable_harness)
    yield opener
    await opener.close_all()


@pytest.fixture
async def store(open_store: StoreOpener) -> Store:
    return await open_store()

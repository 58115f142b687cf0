"""Fixtures of the PostgreSQL store tests: stores on the test's fresh database, closed
at teardown, so two of them stand for two replicas sharing one database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from lockd.store.postgres import PostgresOptions, PostgresStore
from tests.postgres_server import PostgresDatabase

OpenReplica = Callable[..., Awaitable[PostgresStore]]


def options_for(database: PostgresDatabase, **changes: Any) -> PostgresOptions:
    """Options for the test's database (no TLS: the throwaway server has none)."""
    return replace(PostgresOptions(dsn=database.dsn, sslmode="disable"), **changes)


@pytest.fixture
async def open_replica(postgres_db: PostgresDatabase) -> AsyncIterator[OpenReplica]:
    """`await open_replica(**option_changes)`: an opened store on the test's database."""
    opened: list[PostgresStore] = []

    async def open_one(**changes: Any) -> PostgresStore:
        store = PostgresStore(options_for(postgres_db, **changes), listener_retry=0.2)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in reversed(opened):
        await store.close()

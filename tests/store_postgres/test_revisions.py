"""Revisions across replicas, and the schema every replica migrates on open."""

from __future__ import annotations

import asyncio

import pytest

from lockd.domain.errors import UnavailableError
from lockd.domain.events import Event
from lockd.domain.ports import PutMode
from lockd.store import postgres_schema
from lockd.store.postgres import PostgresStore
from tests.contract.helpers import T0, all_events, at, lock
from tests.postgres_server import PostgresDatabase
from tests.store_postgres.conftest import OpenReplica, options_for

WRITES_PER_REPLICA = 40


async def test_concurrent_writers_on_two_replicas_log_gapless_in_commit_order(
    open_replica: OpenReplica,
) -> None:
    """Two replicas writing at once: revisions 1..N without a hole, each event logged
    under the revision its writer was told, and a reader tailing the log meanwhile never
    sees a later revision before an earlier one (no gap is ever visible)."""
    a, b, reader = await open_replica(), await open_replica(), await open_replica()
    done = asyncio.Event()
    seen: list[Event] = []

    async def tail() -> None:
        while not done.is_set() or (await reader.head())[1] > len(seen):
            page = await reader.events_since(len(seen), 1000)
            for event in page:
                assert event.revision == len(seen) + 1, (
                    "a revision was visible before its predecessor"
                )
                seen.append(event)
            await asyncio.sleep(0)

    async def write(store: PostgresStore, prefix: str) -> list[int]:
        revisions = []
        for i in range(WRITES_PER_REPLICA):
            committed = await store.put(lock(f"{prefix}{i}"), PutMode.CREATE, at(i))
            revisions.append(committed.event.revision)
        return revisions

    tailer = asyncio.create_task(tail())
    from_a, from_b = await asyncio.gather(write(a, "a"), write(b, "b"))
    done.set()
    await tailer
    total = 2 * WRITES_PER_REPLICA
    assert sorted(from_a + from_b) == list(range(1, total + 1))
    assert from_a == sorted(from_a)
    assert from_b == sorted(from_b)
    log = await all_events(reader)
    assert log == seen
    assert {event.revision: event.name for event in log} == {
        **{revision: f"a{i}" for i, revision in enumerate(from_a)},
        **{revision: f"b{i}" for i, revision in enumerate(from_b)},
    }


async def test_two_replicas_racing_to_create_one_lock_get_one_winner(
    open_replica: OpenReplica,
) -> None:
    """A CREATE of one name from two replicas at once commits once; the other is refused
    and leaves no revision behind."""
    a, b = await open_replica(), await open_replica()
    results = await asyncio.gather(
        *(store.put(lock("same"), PutMode.CREATE, T0) for store in (a, b) for _ in range(5)),
        return_exceptions=True,
    )
    winners = [result for result in results if not isinstance(result, BaseException)]
    assert len(winners) == 1
    assert (await a.head())[1] == 1


async def test_two_replicas_expiring_at_once_expire_each_lock_once(
    open_replica: OpenReplica,
) -> None:
    """Two reapers racing commit one EXPIRE per lock between them, revisions gapless."""
    a, b = await open_replica(), await open_replica()
    for i in range(20):
        await a.put(lock(f"l{i}", expires=at(1)), PutMode.CREATE, T0)
    expired = await asyncio.gather(*(store.expire_due(at(2)) for store in (a, b, a, b)))
    names = sorted(event.name for batch in expired for event in batch)
    assert names == sorted(f"l{i}" for i in range(20))
    assert [event.revision for event in await all_events(a)] == list(range(1, 41))


async def test_replicas_starting_at_the_same_moment_share_one_schema_and_epoch(
    postgres_db: PostgresDatabase,
) -> None:
    """Opening several stores at once on an empty database migrates it exactly once."""
    stores = [PostgresStore(options_for(postgres_db)) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        epochs = {(await store.head())[0] for store in stores}
        assert len(epochs) == 1
        version = postgres_db.server.psql("SELECT version FROM lockd_schema", postgres_db.name)
        assert version == str(postgres_schema.SCHEMA_VERSION)
    finally:
        for store in stores:
            await store.close()


async def test_a_newer_schema_version_is_refused(postgres_db: PostgresDatabase) -> None:
    """A database written by a newer lockd is not touched: UnavailableError on open."""
    store = PostgresStore(options_for(postgres_db))
    await store.open()
    await store.close()
    postgres_db.server.psql("UPDATE lockd_schema SET version = 99", postgres_db.name)
    newer = PostgresStore(options_for(postgres_db))
    with pytest.raises(UnavailableError, match="schema version 99 is newer"):
        await newer.open()
    assert not newer.healthy


async def test_an_old_schema_is_upgraded_on_open_and_keeps_its_data(
    postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at the current version gains the next version's changes when a newer
    lockd opens it; data, epoch and revision stay."""
    old = PostgresStore(options_for(postgres_db))
    await old.open()
    await old.put(lock("a"), PutMode.CREATE, T0)
    before = await old.snapshot()
    await old.close()
    upgraded = postgres_schema.SCHEMA_VERSION + 1
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", upgraded)
    monkeypatch.setitem(postgres_schema.MIGRATIONS, upgraded, ("CREATE TABLE later (x INT)",))
    new = PostgresStore(options_for(postgres_db))
    await new.open()
    try:
        assert await new.snapshot() == before
        assert postgres_db.server.psql("SELECT version FROM lockd_schema", postgres_db.name) == (
            str(upgraded)
        )
        assert postgres_db.server.psql("SELECT count(*) FROM later", postgres_db.name) == "0"
    finally:
        await new.close()


async def test_a_failed_upgrade_leaves_the_old_version_to_retry(
    postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that fails halfway is rolled back whole (DDL is transactional)."""
    first = PostgresStore(options_for(postgres_db))
    await first.open()
    await first.close()
    current = postgres_schema.SCHEMA_VERSION
    monkeypatch.setattr(postgres_schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(
        postgres_schema.MIGRATIONS,
        current + 1,
        ("CREATE TABLE half (x INT)", "CREATE TABLE broken (x NO_SUCH_TYPE)"),
    )
    failing = PostgresStore(options_for(postgres_db))
    with pytest.raises(UnavailableError, match="no_such_type"):
        await failing.open()
    assert postgres_db.server.psql("SELECT version FROM lockd_schema", postgres_db.name) == (
        str(current)
    )
    assert postgres_db.server.psql("SELECT to_regclass('half') IS NULL", postgres_db.name) == "t"

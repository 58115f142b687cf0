"""A database that goes away and comes back, and databases that cannot be reached."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lockd.config import parse_config
from lockd.domain.errors import UnavailableError
from lockd.domain.ports import PutMode
from lockd.store import build_store
from lockd.store.postgres import PostgresOptions, PostgresStore
from tests.contract.helpers import T0, all_events, at, lock
from tests.postgres_server import PASSWORD, SUPERUSER, PostgresDatabase
from tests.store_postgres.conftest import OpenReplica, options_for
from tests.support import eventually, free_port


async def test_a_stopped_database_makes_writes_unavailable_until_it_returns(
    postgres_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    """pg_ctl stop: check() and healthy turn false, writes raise UnavailableError; after
    pg_ctl start the same store recovers by itself, nothing acknowledged is lost and the
    log stays gapless."""
    store = await open_replica()
    await store.put(lock("before"), PutMode.CREATE, T0)
    postgres_db.server.stop()
    try:
        assert not await store.check()
        with pytest.raises(UnavailableError, match=r"^store unavailable: PostgreSQL at 127\.0"):
            await store.put(lock("during"), PutMode.CREATE, at(1))
        assert not store.healthy
    finally:
        postgres_db.server.start()
    await eventually(store.check, what="the store to see the database again")
    assert (await store.put(lock("after"), PutMode.CREATE, at(2))).event.revision == 2
    assert [event.name for event in await all_events(store)] == ["before", "after"]
    await eventually(lambda: store.listening, what="the commit listener to reconnect")


async def test_a_crashed_database_recovers_every_acknowledged_write(
    postgres_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    """pg_ctl stop -m immediate (a crash, no shutdown checkpoint): after the restart
    every write the store acknowledged is there."""
    store = await open_replica()
    for i in range(5):
        await store.put(lock(f"l{i}"), PutMode.CREATE, at(i))
    postgres_db.server.stop(mode="immediate")
    postgres_db.server.start()
    await eventually(store.check, what="the store to see the database again")
    assert [event.revision for event in await all_events(store)] == [1, 2, 3, 4, 5]


async def test_a_configured_dsn_with_several_hosts_uses_the_first_writable_one(
    postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    """`dsn` lists a host where nothing listens, then the real server
    (target_session_attrs=read-write): the store the config builds opens on the second,
    writes and listens there."""
    dsn = (
        f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{free_port()},"
        f"127.0.0.1:{postgres_db.server.port}/{postgres_db.name}"
        "?target_session_attrs=read-write"
    )
    storage = {"type": "postgres", "dsn": dsn, "sslmode": "disable"}
    document = {"data_dir": str(tmp_path), "auth_service": {"enabled": True, "storage": storage}}
    config = await asyncio.to_thread(parse_config, document, env={})
    store = build_store("postgres", tmp_path / "unused.db", config.auth_service.storage.postgres)
    await store.open()
    try:
        assert (await store.put(lock("there"), PutMode.CREATE, T0)).event.revision == 1
        assert isinstance(store, PostgresStore)
        await eventually(lambda: store.listening, what="the commit listener on the second host")
    finally:
        await store.close()


async def test_opening_without_a_database_server_is_a_clear_unavailable_error() -> None:
    """Nothing listens at the DSN: UnavailableError naming host and database, no
    password in the message, and the store stays unhealthy."""
    options = PostgresOptions(
        dsn=f"postgresql://lockd:s3cret@127.0.0.1:{free_port()}/lockd",
        sslmode="disable",
        connect_timeout=2.0,
    )
    store = PostgresStore(options)
    with pytest.raises(UnavailableError) as raised:
        await store.open()
    message = str(raised.value)
    assert message.startswith("store unavailable: cannot connect to PostgreSQL at 127.0.0.1:")
    assert "/lockd: " in message
    assert "s3cret" not in message
    assert not store.healthy


async def test_a_wrong_password_is_refused_without_echoing_it(
    postgres_db: PostgresDatabase,
) -> None:
    """The configured password overrides the DSN's; a wrong one is an UnavailableError
    that says authentication failed and never repeats the password."""
    store = PostgresStore(options_for(postgres_db, password="not-the-password"))
    with pytest.raises(UnavailableError, match="password authentication failed") as raised:
        await store.open()
    assert "not-the-password" not in str(raised.value)


async def test_require_tls_against_a_server_without_tls_is_refused(
    postgres_db: PostgresDatabase,
) -> None:
    """sslmode=require never falls back to plaintext: the open fails, clearly."""
    store = PostgresStore(options_for(postgres_db, sslmode="require"))
    with pytest.raises(UnavailableError, match=r"^store unavailable: cannot connect to "):
        await store.open()

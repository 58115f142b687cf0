"""PostgreSQL cancel requests through `lockd proxy`: psql's Ctrl-C and asyncpg's cancel reach
the backend of their own session, never another user's; a cancel for an ended session,
another user's key or an unknown key is dropped (a real server, psql, asyncpg)."""

from __future__ import annotations

import asyncio
import signal
import struct

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from lockd.domain.lock import Lock, LockTarget
from lockd.proxy import pg_wire
from tests.agent.helpers import Cluster
from tests.postgres_server import SUPERUSER, PostgresDatabase, PostgresServer
from tests.proxy.conftest import StartProxy
from tests.proxy.helpers import (
    PSQL,
    Certificates,
    ClientFiles,
    asyncpg_connect,
    conninfo,
    postgres_listener,
    start_psql,
)
from tests.proxy.test_postgres_proxy import metric, upstream_socket
from tests.support import WAIT, eventually

pytestmark = pytest.mark.skipif(PSQL is None, reason="psql is not installed")

SLEEP = "SELECT pg_sleep(120)"


async def sleeping_backends(server: PostgresServer, database: str) -> list[int]:
    """Upstream process ids running SLEEP now (asked over the server's own socket)."""
    direct = await asyncpg.connect(
        host=str(server.socket_dir), port=server.port, user=SUPERUSER, database=database
    )
    try:
        rows = await direct.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query = $2 "
            "AND state = 'active'",
            database,
            SLEEP,
        )
    finally:
        await direct.close()
    return [int(row["pid"]) for row in rows]


async def one_sleeping(server: PostgresServer, database: str) -> int:
    async def probe() -> int | None:
        pids = await sleeping_backends(server, database)
        return pids[0] if len(pids) == 1 else None

    pid: int = await eventually(probe, what="one backend running pg_sleep")
    return pid


async def send_cancel(port: int, key: bytes, files: ClientFiles | None) -> None:
    """A CancelRequest as libpq (no TLS) or asyncpg (TLS, with `files`) sends it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if files is not None:
            writer.write(pg_wire.encode_ssl_request())
            assert await reader.readexactly(1) == pg_wire.SSL_ACCEPT
            await writer.start_tls(await asyncio.to_thread(files.ssl_context))
        writer.write(pg_wire.encode_cancel_request(key))
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""  # no answer: the proxy just closes
    finally:
        writer.close()


def cancels(registry: CollectorRegistry, result: str) -> float:
    return metric(registry, "lockd_proxy_connections_total", protocol="postgres", result=result)


async def test_psql_ctrl_c_cancels_the_running_query_through_the_proxy(
    start_proxy: StartProxy,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    registry: CollectorRegistry,
) -> None:
    """SIGINT to psql: its plain CancelRequest reaches the session's backend, psql prints
    PostgreSQL's own cancel error and the session survives to report it."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    info = conninfo(proxy.listener("pg").port, postgres_db.name, await certs.user("alice"))
    process = await start_psql(info, SLEEP)
    await one_sleeping(postgres_server, postgres_db.name)
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(WAIT):
        _, err = await process.communicate()
    assert "ERROR:  canceling statement due to user request" in err.decode()
    assert cancels(registry, "cancel_forwarded") == 1


async def test_a_cancel_reaches_only_its_own_live_session(
    start_proxy: StartProxy,
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    registry: CollectorRegistry,
) -> None:
    """The client's key is the proxy's, not the backend's. Bob's certificate with alice's
    key, and an unknown key, are dropped while her query runs on; asyncpg's own cancel
    stops it and the connection is usable; after a lock ends her session, her key is dead."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    port = proxy.listener("pg").port
    alice, bob = await certs.user("alice"), await certs.user("bob")
    connection = await asyncpg_connect(port, postgres_db.name, alice)
    try:
        # asyncpg keeps the key it was given (BackendKeyData) on its protocol object.
        protocol = connection._protocol  # type: ignore[attr-defined]
        key = struct.pack("!ii", protocol.backend_pid, protocol.backend_secret)
        query = asyncio.create_task(connection.fetchval(SLEEP))
        backend = await one_sleeping(postgres_server, postgres_db.name)
        assert connection.get_server_pid() != backend
        await send_cancel(port, key, bob)
        await send_cancel(port, struct.pack("!iI", backend, 12345), None)
        await eventually(lambda: cancels(registry, "cancel_dropped") == 2, what="two dropped")
        assert await sleeping_backends(postgres_server, postgres_db.name) == [backend]
        query.cancel()  # asyncpg sends a CancelRequest over TLS with alice's certificate
        with pytest.raises(asyncio.CancelledError):
            await query
        async with asyncio.timeout(WAIT):
            assert await connection.fetchval("SELECT 7") == 7
        assert cancels(registry, "cancel_forwarded") == 1
        assert await sleeping_backends(postgres_server, postgres_db.name) == []
        await cluster.auth.client().create_lock(Lock("l1", LockTarget(user="alice")))
        await eventually(lambda: len(proxy.listener("pg").cancel_keys) == 0, what="key gone")
        await send_cancel(port, key, None)
        await eventually(lambda: cancels(registry, "cancel_dropped") == 3, what="third dropped")
    finally:
        connection.terminate()

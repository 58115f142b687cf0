"""PostgreSQL through `lockd proxy`: a real server, the real psql and asyncpg, a real agent.

The proxy logs in upstream over the server's Unix socket as `postgres` (trust); clients
present certificates from the cluster CA. Locks are created on the in-process auth
server and reach the proxy through the node agent.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from lockd.domain.lock import Lock, LockTarget
from tests.agent.helpers import Cluster
from tests.postgres_server import PostgresDatabase, PostgresServer
from tests.proxy.conftest import StartProxy
from tests.proxy.helpers import (
    PSQL,
    Certificates,
    asyncpg_connect,
    conninfo,
    postgres_listener,
    psql,
    start_psql,
)
from tests.support import WAIT, eventually

pytestmark = pytest.mark.skipif(PSQL is None, reason="psql is not installed")

LOCK_MESSAGE = 'lock targeting User:"alice" is in force: Suspicious activity.'
ROLE_MESSAGE = 'lock targeting Role:"dev" is in force: Role frozen.'


def upstream_socket(server: PostgresServer) -> Path:
    return server.socket_dir / f".s.PGSQL.{server.port}"


async def lock(cluster: Cluster, name: str, message: str, **target: str) -> None:
    await cluster.auth.client().create_lock(Lock(name, LockTarget(**target), message=message))


async def sessions_on_agent(cluster: Cluster, count: int) -> None:
    async def probe() -> bool:
        return (await cluster.agents[-1].status()).sessions == count

    await eventually(probe, what=f"{count} sessions on the agent")


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_psql_and_asyncpg_query_through_the_proxy_with_a_cluster_certificate(
    start_proxy: StartProxy,
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    registry: CollectorRegistry,
) -> None:
    """A cluster-signed certificate gets psql and asyncpg through to the real database."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    port = proxy.listener("pg").port
    alice = await certs.user("alice")
    result = await psql(conninfo(port, postgres_db.name, alice), "SELECT 40 + 2, current_user")
    assert (result.code, result.stdout.strip()) == (0, "42|postgres"), result.stderr
    connection = await asyncpg_connect(port, postgres_db.name, alice)
    try:
        await connection.execute("CREATE TABLE t (n int)")
        await connection.executemany("INSERT INTO t VALUES ($1)", [(n,) for n in range(100)])
        assert await connection.fetchval("SELECT sum(n) FROM t") == 4950
    finally:
        await connection.close()
    await eventually(
        lambda: (
            metric(
                registry, "lockd_proxy_connections_total", protocol="postgres", result="accepted"
            )
            == 2
        ),
        what="two accepted connections",
    )
    assert (
        metric(
            registry, "lockd_proxy_relayed_bytes_total", protocol="postgres", direction="to_client"
        )
        > 0
    )
    # The agent audits the sessions with what the proxy told it (just after answering).
    audit = cluster.agents[-1].audit
    await eventually(lambda: len(audit.of("session.start")) == 2, what="two session.start")
    started = audit.of("session.start")
    fields = started[0].fields
    assert fields["user"] == "alice"
    assert fields["login"] == "postgres"
    assert fields["protocol"] == "db"
    assert str(fields["remote_address"]).startswith("127.0.0.1:")
    assert str(fields["target_resource"]).startswith("postgres://postgres@")


async def test_a_user_lock_ends_a_live_psql_session_with_the_lock_message(
    start_proxy: StartProxy,
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
) -> None:
    """psql waiting on a query prints `FATAL:  <lock message>` and exits when alice is locked."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    info = conninfo(proxy.listener("pg").port, postgres_db.name, await certs.user("alice"))
    process = await start_psql(info, "SELECT pg_sleep(120)")
    await sessions_on_agent(cluster, 1)
    await lock(cluster, "l1", "Suspicious activity.", user="alice")
    async with asyncio.timeout(WAIT):
        _, err = await process.communicate()
    assert process.returncode != 0
    assert f"FATAL:  {LOCK_MESSAGE}" in err.decode()
    await sessions_on_agent(cluster, 0)


async def test_a_role_lock_ends_a_live_asyncpg_connection_with_the_lock_message(
    start_proxy: StartProxy,
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    registry: CollectorRegistry,
) -> None:
    """The role comes from the certificate; the driver's error carries the lock's text."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    connection = await asyncpg_connect(
        proxy.listener("pg").port, postgres_db.name, await certs.user("alice", roles=("dev",))
    )
    query = asyncio.create_task(connection.fetchval("SELECT pg_sleep(120)"))
    await sessions_on_agent(cluster, 1)
    await lock(cluster, "r1", "Role frozen.", role="dev")
    with pytest.raises(asyncpg.PostgresError) as raised:
        async with asyncio.timeout(WAIT):
            await query
    # asyncpg: "connection was closed in the middle of operation: <the server's message>"
    assert str(raised.value).endswith(ROLE_MESSAGE)
    connection.terminate()
    assert (
        metric(registry, "lockd_proxy_terminations_total", protocol="postgres", reason="lock") == 1
    )


async def test_new_connections_of_a_locked_user_are_refused_with_the_message(
    start_proxy: StartProxy,
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
) -> None:
    """psql shows the FATAL lock message; another user still gets in."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    port = proxy.listener("pg").port
    await lock(cluster, "l1", "Suspicious activity.", user="alice")
    await cluster.agents[-1].wait_revision(cluster.auth.revision)
    refused = await psql(conninfo(port, postgres_db.name, await certs.user("alice")), "SELECT 1")
    assert refused.code != 0
    assert f"FATAL:  {LOCK_MESSAGE}" in refused.stderr
    allowed = await psql(conninfo(port, postgres_db.name, await certs.user("bob")), "SELECT 1")
    assert (allowed.code, allowed.stdout.strip()) == (0, "1"), allowed.stderr


async def test_foreign_expired_and_missing_certificates_are_refused_at_the_handshake(
    start_proxy: StartProxy,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    registry: CollectorRegistry,
    tmp_path: Path,
) -> None:
    """No session is opened for a certificate the cluster CA did not sign or that expired."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    port = proxy.listener("pg").port
    other = await asyncio.to_thread(Certificates, tmp_path / "foreign", "other.lockd")
    foreign = await other.user("alice")
    foreign_with_our_ca = type(foreign)(foreign.key, foreign.cert, certs.ca_file)
    for files in (foreign_with_our_ca, await certs.expired_user("alice")):
        result = await psql(conninfo(port, postgres_db.name, files), "SELECT 1")
        assert result.code != 0, result
        assert result.stdout == ""
    no_cert = await psql(conninfo(port, postgres_db.name, None), "SELECT 1")
    assert no_cert.code != 0
    # With TLS 1.3 the client learns of the refusal only after its side of the handshake.
    with pytest.raises((ssl.SSLError, OSError, asyncpg.ConnectionDoesNotExistError)):
        await asyncpg_connect(port, postgres_db.name, await certs.expired_user("alice"))
    await eventually(
        lambda: (
            metric(
                registry, "lockd_proxy_connections_total", protocol="postgres", result="tls_failed"
            )
            >= 4
        ),
        what="four handshake failures",
    )
    assert (
        metric(registry, "lockd_proxy_connections_total", protocol="postgres", result="accepted")
        == 0
    )


async def test_a_client_without_tls_is_told_to_use_a_certificate(
    start_proxy: StartProxy, postgres_server: PostgresServer, postgres_db: PostgresDatabase
) -> None:
    """sslmode=disable gets a FATAL message naming what to configure."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    info = f"host=127.0.0.1 port={proxy.listener('pg').port} dbname={postgres_db.name} "
    result = await psql(info + "user=alice sslmode=disable", "SELECT 1")
    assert result.code != 0
    assert "FATAL:  lockd proxy: TLS with a client certificate" in result.stderr


async def test_a_client_that_never_finishes_the_handshake_is_dropped_at_the_timeout(
    start_proxy: StartProxy, postgres_server: PostgresServer, registry: CollectorRegistry
) -> None:
    """Slowloris: SSLRequest answered, then no TLS hello; the proxy closes the socket."""
    listener = postgres_listener(upstream_socket(postgres_server), handshake_timeout=_seconds(1))
    proxy = await start_proxy(listener)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.listener("pg").port)
    writer.write((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
    await writer.drain()
    assert await reader.readexactly(1) == b"S"
    async with asyncio.timeout(WAIT):
        assert await reader.read() == b""  # closed by the proxy, nothing sent
    writer.close()
    assert (
        metric(
            registry,
            "lockd_proxy_connections_total",
            protocol="postgres",
            result="handshake_timeout",
        )
        == 1
    )


async def test_connections_past_the_listener_limit_are_refused_before_tls(
    start_proxy: StartProxy,
    registry: CollectorRegistry,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
) -> None:
    """max_connections: 1 — a second client is refused before TLS (no handshake spent on it).

    The refusal is an ErrorResponse in answer to the SSLRequest; libpq does not trust text
    sent before TLS and reports "server sent an error response during SSL exchange"."""
    proxy = await start_proxy(
        postgres_listener(upstream_socket(postgres_server), max_connections=1)
    )
    port = proxy.listener("pg").port
    alice = await certs.user("alice")
    first = await asyncpg_connect(port, postgres_db.name, alice)
    try:
        second = await psql(conninfo(port, postgres_db.name, alice), "SELECT 1")
        assert second.code != 0
        assert "error response during SSL exchange" in second.stderr
        assert (
            metric(
                registry, "lockd_proxy_connections_total", protocol="postgres", result="over_limit"
            )
            == 1
        )
    finally:
        await first.close()


async def test_shutdown_drains_then_ends_live_connections_with_a_message(
    start_proxy: StartProxy,
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
) -> None:
    """stop(): no new connections; a live one is told `lockd proxy is shutting down`."""
    proxy = await start_proxy(
        postgres_listener(upstream_socket(postgres_server)), shutdown_timeout=_seconds(0.5)
    )
    port = proxy.listener("pg").port
    connection = await asyncpg_connect(port, postgres_db.name, await certs.user("alice"))
    query = asyncio.create_task(connection.fetchval("SELECT pg_sleep(120)"))
    await sessions_on_agent(cluster, 1)
    await proxy.stop()
    with pytest.raises(asyncpg.PostgresError, match="lockd proxy is shutting down"):
        await query
    connection.terminate()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


def _seconds(value: float) -> object:
    from datetime import timedelta

    return timedelta(seconds=value)

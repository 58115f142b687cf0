"""Strict mode when the node agent dies: a real `lockd start` process, killed with SIGKILL.

The auth server and the agent run in one `lockd start` subprocess whose cluster default
is strict; the proxy (in this process) uses the CA in its data dir. When the process is
killed, the proxy's channel to the agent breaks: live strict connections end with the
lock-out message and new ones are refused with a message saying the agent is unavailable.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.proxy.proxy_service import ProxyService
from tests.postgres_server import PostgresDatabase, PostgresServer
from tests.proxy.helpers import (
    PSQL,
    Certificates,
    asyncpg_connect,
    conninfo,
    postgres_listener,
    proxy_config,
    psql,
)
from tests.proxy.lockd_process import LockdProcess, lockd_start

pytestmark = [pytest.mark.slow, pytest.mark.skipif(PSQL is None, reason="psql is not installed")]


@pytest.fixture
async def strict_lockd(tmp_path: Path, socket_dir: Path) -> AsyncIterator[LockdProcess]:
    async with lockd_start(tmp_path, socket_dir, cluster="strict.lockd", strict=True) as lockd:
        yield lockd


async def test_killing_the_agent_in_strict_mode_ends_connections_with_the_lockout_message(
    strict_lockd: LockdProcess,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    tmp_path: Path,
) -> None:
    """kill -9 of the agent: the live strict session ends with the lock-out text; a new
    connection is refused, naming the unavailable agent."""
    process, data_dir, agent_socket = (
        strict_lockd.process,
        strict_lockd.data_dir,
        strict_lockd.agent_socket,
    )
    certs = await asyncio.to_thread(Certificates, tmp_path / "certs", "strict.lockd", data_dir)
    socket = postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}"
    config = proxy_config(agent_socket, await certs.server(), postgres_listener(socket))
    async with await ProxyService.start(config, CollectorRegistry()) as proxy:
        port = proxy.listener("pg").port
        alice = await certs.user("alice")
        connection = await asyncpg_connect(port, postgres_db.name, alice)
        query = asyncio.create_task(connection.fetchval("SELECT pg_sleep(120)"))
        await asyncio.sleep(0.2)  # the query is on its way (not a wait for time logic)
        process.send_signal(signal.SIGKILL)
        with pytest.raises(asyncpg.PostgresError) as raised:
            async with asyncio.timeout(30):
                await query
        assert str(raised.value).endswith(STRICT_LOCKOUT_MESSAGE)
        connection.terminate()
        refused = await psql(conninfo(port, postgres_db.name, alice), "SELECT 1")
        assert refused.code != 0
        assert "FATAL:  lockd proxy: the node agent is unavailable" in refused.stderr

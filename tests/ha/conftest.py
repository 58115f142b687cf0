"""Fixtures of the HA tests: auth replicas (`AuthApp`s) on the test's real PostgreSQL
database, and real in-process agents (`lockd.runtime.agent_app.AgentApp`); both stopped
at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from lockd.auth.watch_stream import WatchSettings
from lockd.domain.ports import SystemClock
from lockd.obs.audit import MemoryAuditSink
from lockd.runtime.auth_app import AuthApp, AuthServerSettings
from lockd.store.postgres import PostgresOptions, PostgresStore
from tests.agent.helpers import Cluster
from tests.api.helpers import open_channel
from tests.postgres_server import PostgresDatabase


@pytest.fixture
async def nodes(tmp_path: Path, socket_dir: Path) -> AsyncIterator[Cluster]:
    """Starts agents with `await nodes.start_agent(addresses=(...), ...)`."""
    manager = Cluster(tmp_path, socket_dir)
    try:
        yield manager
    finally:
        await manager.close()


Replicas = Callable[..., Awaitable[tuple[AuthApp, grpc.aio.Channel]]]
HEARTBEAT = timedelta(milliseconds=500)


@pytest.fixture
async def replicas(postgres_db: PostgresDatabase) -> AsyncIterator[Replicas]:
    """Starts named replicas on the test's database; stops them and closes channels."""
    apps: list[AuthApp] = []
    channels: list[grpc.aio.Channel] = []

    async def start(
        name: str, heartbeat: timedelta = HEARTBEAT, dsn: str = ""
    ) -> tuple[AuthApp, grpc.aio.Channel]:
        """Replica `name`; `dsn`: another than the test database's (e.g. several hosts)."""
        store = PostgresStore(
            PostgresOptions(dsn=dsn or postgres_db.dsn, min_pool=1, max_pool=4, sslmode="disable")
        )
        settings = AuthServerSettings(
            cluster_name="ha.test",
            listen_addr="127.0.0.1:0",
            replica_id=name,
            watch=WatchSettings(heartbeat_interval=heartbeat),
            shutdown_grace=1.0,  # streams still open at teardown need not be waited for
        )
        app = await AuthApp.start(settings, store, SystemClock(), MemoryAuditSink())
        apps.append(app)
        channel = open_channel(f"127.0.0.1:{app.port}")
        channels.append(channel)
        return app, channel

    yield start
    for channel in channels:
        await channel.close()
    for app in apps:
        await app.stop()

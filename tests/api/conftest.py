"""Fixtures of the API suite: real auth servers on loopback gRPC over real SQLite files.

`servers` starts `AuthApp`s (listen 127.0.0.1:0, a SQLite file in tmp_path, an
in-memory audit sink) and stops whatever is still running at teardown; `server` is one
with the defaults. Channels opened through a `Running` are closed with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from lockd.auth.watch_stream import WatchSettings
from lockd.domain.ports import LOG_RETENTION_AGE, LOG_RETENTION_COUNT, Store, SystemClock
from lockd.obs.audit import MemoryAuditSink
from lockd.runtime.auth_app import AuthApp, AuthServerSettings
from lockd.store import SqliteStore
from lockd.testing import FakeClock
from tests.api.fakes import ControlledStore
from tests.api.helpers import open_channel


@dataclass
class Running:
    """One auth server started by the `servers` fixture."""

    app: AuthApp
    store: Store
    db: Path
    audit: MemoryAuditSink
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    stopped: bool = False

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    def channel(self) -> grpc.aio.Channel:
        """A new channel to the TCP listener (closed at teardown)."""
        channel = open_channel(self.target)
        self.channels.append(channel)
        return channel

    def admin_channel(self) -> grpc.aio.Channel:
        """A new channel to the local admin socket (closed at teardown)."""
        socket = self.app.settings.admin_socket
        assert socket is not None, "this server has no admin socket"
        channel = open_channel(f"unix:{socket}")
        self.channels.append(channel)
        return channel

    async def close_channels(self) -> None:
        for channel in self.channels:
            await channel.close()
        self.channels.clear()

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.app.stop()


class Servers:
    """Starts auth servers; `start(db=...)` on the same file is a restart."""

    def __init__(self, directory: Path, sockets: Path) -> None:
        self.directory = directory
        self.sockets = sockets
        self.running: list[Running] = []
        # For tests about expiry (`start(fake_clock=True)`): the servers' wall time, moved
        # by the test; shared across restarts. It starts at the real time.
        self.clock = FakeClock(datetime.now(UTC))

    def db_path(self, name: str = "lockd") -> Path:
        return self.directory / f"{name}.db"

    async def start(
        self,
        *,
        db: Path | None = None,
        controlled: bool = False,
        admin_socket: bool = False,
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
        watch: WatchSettings | None = None,
        fake_clock: bool = False,
        **settings: Any,
    ) -> Running:
        path = db if db is not None else self.db_path()
        store: Store = SqliteStore(
            path, retention_age=retention_age, retention_count=retention_count
        )
        if controlled:
            store = cast(Store, ControlledStore(store))
        base = AuthServerSettings(cluster_name="test.lockd", listen_addr="127.0.0.1:0")
        if admin_socket:
            settings["admin_socket"] = self.sockets / f"admin-{len(self.running)}.sock"
        if watch is not None:
            settings["watch"] = watch
        # Short grace: a test that leaves a health Watch open must not wait 5 s per stop.
        settings.setdefault("shutdown_grace", 1.0)
        audit = MemoryAuditSink()
        app = await AuthApp.start(
            dataclasses.replace(base, **settings),
            store,
            self.clock if fake_clock else SystemClock(),
            audit,
        )
        running = Running(app, store, path, audit)
        self.running.append(running)
        return running

    async def close(self) -> None:
        for running in reversed(self.running):
            await running.close_channels()
            await running.stop()


@pytest.fixture
async def servers(tmp_path: Path, socket_dir: Path) -> AsyncIterator[Servers]:
    manager = Servers(tmp_path, socket_dir)
    try:
        yield manager
    finally:
        await manager.close()


@pytest.fixture
async def server(servers: Servers) -> Running:
    return await servers.start()

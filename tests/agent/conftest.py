"""Fixtures of the agent suite: a real auth server and real node agents in one process.

`cluster` starts `AuthApp`s (loopback gRPC, SQLite in tmp_path by default, small
heartbeat interval) and `AgentApp`s (Unix socket in a short /tmp directory, fast backoff),
and stops everything still running at teardown. Sidecars talk to an agent with the
public `AgentClient`; admins with `AuthClient` over the auth server's TCP listener
(which grants admin rights until TLS identities exist).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.agent.fake_auth import FakeFactory, FakeWatchServer, Script
from tests.agent.helpers import Cluster


@pytest.fixture
async def cluster(tmp_path: Path, socket_dir: Path) -> AsyncIterator[Cluster]:
    manager = Cluster(tmp_path, socket_dir)
    try:
        yield manager
    finally:
        await manager.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeFactory]:
    """Starts scripted WatchLocks servers (tests.agent.fake_auth); stops them at the end."""
    started: list[FakeWatchServer] = []

    async def start(scripts: Sequence[Script]) -> FakeWatchServer:
        server = FakeWatchServer(scripts)
        await server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            await server.stop()

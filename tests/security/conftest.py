"""Fixtures of the security suite: a real TLS auth server on loopback per test.

`cluster` is started with a `MemoryStore`, its roles seeded (locksmith, auditor, dev);
`sqlite_cluster` is not started, so that a test can start, stop and restart it on the
same SQLite file and CA directory. Unix sockets live in a short directory under /tmp.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lockd.store import SqliteStore
from lockd.testing import MemoryStore
from tests.security.helpers import SecureCluster


@pytest.fixture
async def cluster(tmp_path: Path, socket_dir: Path) -> AsyncIterator[SecureCluster]:
    manager = SecureCluster(tmp_path, socket_dir, MemoryStore)
    try:
        await manager.start()
        await manager.seed_roles()
        yield manager
    finally:
        await manager.stop()


@pytest.fixture
async def sqlite_cluster(tmp_path: Path, socket_dir: Path) -> AsyncIterator[SecureCluster]:
    database = tmp_path / "lockd.db"
    manager = SecureCluster(tmp_path, socket_dir, lambda: SqliteStore(database))
    try:
        yield manager
    finally:
        await manager.stop()

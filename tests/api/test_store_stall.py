"""Store health under a hanging write (issue 15, item 7), on a real SQLite file whose
write lock another connection holds: the status reports the store unhealthy once the
write has waited longer than the bound, and healthy again when it completes."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from lockd.auth.timed_store import DEFAULT_STALL_AFTER
from lockd.domain.ports import SystemClock
from lockd.obs.audit import MemoryAuditSink
from lockd.runtime.auth_app import AuthApp, AuthServerSettings
from lockd.store import SqliteStore
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from tests.api.helpers import cluster_status, lock_pb_of, open_channel
from tests.support import eventually


async def test_a_write_that_hangs_past_the_bound_makes_the_store_unhealthy(
    tmp_path: Path,
) -> None:
    """CreateLock waits on the locked file; GetClusterStatus says store_healthy false
    after DEFAULT_STALL_AFTER, then true once the lock is released and the write lands."""
    database = tmp_path / "lockd.db"
    store = SqliteStore(database, busy_timeout=120.0)  # waits rather than fails
    settings = AuthServerSettings(cluster_name="stall.lockd", listen_addr="127.0.0.1:0")
    app = await AuthApp.start(settings, store, SystemClock(), MemoryAuditSink())
    channel = open_channel(f"127.0.0.1:{app.port}")
    blocker = await asyncio.to_thread(sqlite3.connect, database, isolation_level=None)
    try:
        assert (await cluster_status(channel)).store_healthy
        await asyncio.to_thread(blocker.execute, "BEGIN EXCLUSIVE")
        create = asyncio.ensure_future(
            LockServiceStub(channel).CreateLock(lock_pb.CreateLockRequest(lock=lock_pb_of("l1")))
        )

        async def unhealthy() -> bool:
            return not (await cluster_status(channel)).store_healthy

        await eventually(unhealthy, within=DEFAULT_STALL_AFTER + 30, what="store unhealthy")
        assert not create.done()
        await asyncio.to_thread(blocker.execute, "ROLLBACK")
        assert (await create).revision == 1

        async def healthy() -> bool:
            return (await cluster_status(channel)).store_healthy

        await eventually(healthy, what="store healthy again")
    finally:
        await asyncio.to_thread(blocker.close)
        await channel.close()
        await app.stop()

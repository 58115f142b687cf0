"""Moving an embedded cluster's locks to PostgreSQL with lockctl (docs/ha.md).

`lockctl get all` on the SQLite auth server, `lockctl create -f --force` on a PostgreSQL
replica: the locks, roles and the cluster auth preference arrive with their names,
targets, messages and expiry.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lockd.domain.ports import SystemClock
from lockd.obs.audit import MemoryAuditSink
from lockd.runtime.auth_app import AuthApp, AuthServerSettings
from lockd.store import SqliteStore
from lockd.store.postgres import PostgresOptions, PostgresStore
from tests.postgres_server import PostgresDatabase

pytestmark = pytest.mark.slow

LOCKCTL = Path(sys.executable).with_name("lockctl")


def config_for(directory: Path, admin_socket: Path) -> Path:
    path = directory / "lockctl.yaml"
    path.write_text(
        f"""\
cluster_name: move.test
data_dir: {directory}
auth_service:
  enabled: true
  insecure: true
  admin_socket: {admin_socket}
""",
        encoding="utf-8",
    )
    return path


def lockctl(config: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(LOCKCTL), "-c", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_locks_roles_and_the_preference_move_from_sqlite_to_postgres(
    tmp_path: Path, socket_dir: Path, postgres_db: PostgresDatabase
) -> None:
    """Everything `get all` prints on SQLite is what the PostgreSQL replica lists after
    `create -f --force`."""
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_dir.mkdir()
    new_dir.mkdir()
    old_socket, new_socket = socket_dir / "old.sock", socket_dir / "new.sock"
    old = await AuthApp.start(
        AuthServerSettings("move.test", "127.0.0.1:0", admin_socket=old_socket),
        SqliteStore(old_dir / "lockd.db"),
        SystemClock(),
        MemoryAuditSink(),
    )
    new = await AuthApp.start(
        AuthServerSettings("move.test", "127.0.0.1:0", admin_socket=new_socket),
        PostgresStore(PostgresOptions(dsn=postgres_db.dsn, max_pool=4, sslmode="disable")),
        SystemClock(),
        MemoryAuditSink(),
    )
    old_config, new_config = config_for(old_dir, old_socket), config_for(new_dir, new_socket)
    try:
        run = asyncio.to_thread
        await run(lockctl, old_config, "lock", "--user=mallory", "--message=Stolen laptop.")
        await run(lockctl, old_config, "lock", "--role=contractor", "--ttl=10h")
        exported = await run(lockctl, old_config, "get", "all")
        await run(lockctl, new_config, "create", "-f", "-", "--force", stdin=exported)

        old_locks = await run(lockctl, old_config, "get", "locks", "-o", "json")
        new_locks = await run(lockctl, new_config, "get", "locks", "-o", "json")
    finally:
        await old.stop()
        await new.stop()
    assert _without_stamps(new_locks) == _without_stamps(old_locks)
    assert "mallory" in new_locks
    assert "contractor" in new_locks  # with its expiry: compared above


def _without_stamps(document: str) -> list[dict[str, object]]:
    """The locks without the fields the new server stamps again (created_at, created_by)."""
    items = json.loads(document)
    locks = items if isinstance(items, list) else items.get("items", [items])
    for lock in locks:
        lock["spec"].pop("created_at", None)
        lock["spec"].pop("created_by", None)
    return sorted(locks, key=lambda lock: str(lock["metadata"]["name"]))

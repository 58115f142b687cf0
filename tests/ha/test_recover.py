"""`lockd recover delete-lock` on a PostgreSQL store, while another replica runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lockd.v1 import watch_service_pb2 as watch_pb
from tests.api.helpers import WatchClient, create_lock, lock_pb_of, start_following
from tests.ha.conftest import Replicas
from tests.postgres_server import PostgresDatabase

pytestmark = pytest.mark.slow

LOCKD = str(Path(sys.executable).parent / "lockd")


async def test_recover_deletes_a_lock_in_the_shared_log_that_running_replicas_apply(
    replicas: Replicas, postgres_db: PostgresDatabase, tmp_path: Path
) -> None:
    """Replica A runs; `lockd recover delete-lock` with a config on the same database
    commits the DELETE as the next revision, A's stream delivers it, the audit says
    who; a second run finds nothing to delete."""
    _, channel = await replicas("a")
    follower = await start_following(await WatchClient.open(channel, "agent-1"))
    revision = await create_lock(channel, lock_pb_of("oops", user="mallory"))
    await follower.until(revision)
    config = tmp_path / "recover.yaml"
    config.write_text(
        f"""\
cluster_name: ha.test
data_dir: {tmp_path / "data"}
log: {{format: json, level: warning}}
auth_service:
  enabled: true
  storage: {{type: postgres, dsn: "{postgres_db.dsn}", sslmode: disable}}
""",
        encoding="utf-8",
    )
    command = [LOCKD, "recover", "delete-lock", "oops", "--config", str(config)]

    def recover() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    done = await asyncio.to_thread(recover)
    assert done.returncode == 0, done.stderr
    assert f'lock "oops" has been deleted (revision {revision + 1})' in done.stdout
    deleted = await follower.until(revision + 1)
    assert [(event.type, event.name) for event in deleted] == [(watch_pb.EVENT_TYPE_DELETE, "oops")]
    audit = (tmp_path / "data" / "audit.log").read_text().splitlines()
    events = [json.loads(line) for line in audit]
    assert [(e["event"], e["name"], e["by"]) for e in events] == [
        ("lock.deleted", "oops", "lockd recover")
    ]
    again = await asyncio.to_thread(recover)
    assert (again.returncode, again.stderr) == (1, 'ERROR: lock "oops" not found\n')

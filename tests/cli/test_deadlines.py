"""A stalled store (issue 15, item 7): every lockctl call has a deadline (--timeout), and
the store's health says a write is hanging. The stall is real: another connection holds
the auth server's SQLite file under an exclusive lock, so its writes wait."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.cli.helpers import AuthServer, lockctl


@contextmanager
def _frozen(database: Path) -> Iterator[None]:
    """Hold the SQLite database's write lock (as a frozen disk would stall writes)."""
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_lockctl_call_the_server_cannot_answer_fails_at_its_deadline(
    fresh_server: AuthServer,
) -> None:
    """`lockctl --timeout=2s lock` against a server whose store write hangs exits 1 with
    a clear error after about two seconds, instead of waiting with no deadline."""
    database = fresh_server.config.parent / "data" / "lockd.db"
    with _frozen(database):
        started = time.monotonic()
        result = lockctl(fresh_server, "--timeout=2s", "lock", "--user=mallory")
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "no answer within the deadline" in result.stderr
    assert "(--timeout=2s)" in result.stderr
    assert elapsed < 30  # far below the old "forever"; generous for a loaded machine
    assert lockctl(fresh_server, "lock", "--user=mallory").returncode == 0


def test_a_bad_timeout_is_a_usage_error(server: AuthServer) -> None:
    """--timeout takes a Go duration; anything else exits 2."""
    result = lockctl(server, "--timeout=soon", "status")
    assert result.returncode == 2
    assert "--timeout" in result.stderr

"""A throwaway PostgreSQL for tests: one real server per pytest session, a database per test.

A pytest plugin (registered in tests/conftest.py) around `lockd.bench.pgserver`: the
server is made with the Debian layout's `initdb`/`pg_ctl` (or the directory in
$LOCKD_PG_BIN) in a private temp dir, listens on a free 127.0.0.1 port and a Unix socket
in that dir, runs as `nobody` when we are root, and is always stopped (`pg_ctl stop -m
fast`) when the session ends, on failure too. Without the binaries (or that user) the
tests skip and say why.

Fixtures:
- `postgres_server` (session): the running `PostgresServer`; started on first use only.
- `postgres_db` (function): a fresh, empty database on it (`PostgresDatabase`, `.dsn`),
  emptied afterwards for reuse (its sessions ended, its public schema new). A test that
  stopped the server gets it started again first.
- `postgres_standby` (function): a factory `(synchronous=False) -> PostgresServer` for a
  streaming-replication standby of the session server, removed after the test.

Durability is not under test here, so the servers run with fsync off: it makes the
per-test `CREATE DATABASE` and every commit cheap on a loaded machine.
"""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from lockd.bench.pgserver import (
    PASSWORD,
    SUPERUSER,
    PostgresServer,
    discard,
    prerequisite_problem,
    start_throwaway,
)

__all__ = ["PASSWORD", "SUPERUSER", "PostgresDatabase", "PostgresServer"]


@dataclass(frozen=True)
class PostgresDatabase:
    """A fresh database of one test on the session's server."""

    server: PostgresServer
    name: str

    @property
    def dsn(self) -> str:
        return self.server.dsn(self.name)


def start_throwaway_server() -> tuple[PostgresServer, Callable[[], None]]:
    """Init and start a server in a new temp dir; returns it and its cleanup.

    Skips (pytest.skip) with the reason when this machine cannot run one.
    """
    problem = prerequisite_problem()
    if problem is not None:
        pytest.skip(problem)
    server = start_throwaway(fsync=False)
    done = False

    def cleanup() -> None:
        nonlocal done
        if not done:
            done = True
            discard(server)

    # Also at interpreter exit: a KeyboardInterrupt must not leave a server behind, nor
    # a SIGTERM (e.g. `timeout`), which would otherwise end Python without exit handlers.
    atexit.register(cleanup)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def on_sigterm(signum: int, _frame: object) -> None:
            cleanup()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)  # then end the way SIGTERM always did

        signal.signal(signal.SIGTERM, on_sigterm)
    return server, cleanup


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    server, cleanup = start_throwaway_server()
    try:
        yield server
    finally:
        cleanup()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh empty database for one test, emptied (connections and all) afterwards."""
    if not postgres_server.running:
        postgres_server.start()  # an earlier test's outage must not leak into this one
    database = PostgresDatabase(postgres_server, postgres_server.create_database())
    yield database
    if not postgres_server.running:
        postgres_server.start()
    postgres_server.recycle_database(database.name)


@pytest.fixture
def postgres_standby(
    postgres_server: PostgresServer,
) -> Iterator[Callable[..., PostgresServer]]:
    """A factory of standbys of the session server; each is removed after the test."""
    standbys: list[PostgresServer] = []

    def make(*, synchronous: bool = False) -> PostgresServer:
        standby = postgres_server.make_standby(
            f"standby{len(standbys) + 1}", synchronous=synchronous
        )
        standbys.append(standby)
        return standby

    yield make
    for standby in standbys:
        postgres_server.stop_replicating_to(standby)

"""Shared pytest configuration: hypothesis profile for a loaded 2-core CI machine, the
throwaway PostgreSQL plugin, and a short directory for Unix sockets."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import blockbuster_ctx
from hypothesis import HealthCheck, settings

# The throwaway PostgreSQL fixtures (postgres_server, postgres_db, postgres_standby).
pytest_plugins = ["tests.postgres_server"]

settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=int(os.environ.get("LOCKD_HYPOTHESIS_EXAMPLES", "200")),
)
settings.load_profile("ci")


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (tmp_path may exceed the 108-byte limit)."""
    path = Path(tempfile.mkdtemp(prefix="lockd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# Test and benchmark tooling in lockd that runs programs by design, not server code: the
# throwaway PostgreSQL (initdb, pg_ctl, psql), which tests drive from async tests.
THROWAWAY_TOOLS = ["lockd.bench.pgserver"]
# The wiring modules whose start() and stop() may block (see the fixture below).
STARTS_AND_STOPS = ("lockd/runtime/auth_app.py", "lockd/runtime/agent_app.py")


@pytest.fixture(autouse=True)
def no_blocking_calls_on_the_event_loop() -> Iterator[None]:
    """Fail any test in which lockd's code blocks the event loop (file or socket IO,
    time.sleep, ... on the loop's thread): such calls stall every stream and session the
    process serves. Test code itself is not scanned, nor are other threads. Starting and
    stopping a server (the wiring's `start`/`stop`: data directory, CA files, sockets)
    may block: it happens once, before serving and after."""
    with blockbuster_ctx("lockd", excluded_modules=THROWAWAY_TOOLS) as guard:
        for function in guard.functions.values():
            for module in STARTS_AND_STOPS:
                function.can_block_in(module, {"start", "stop"})
            # grpc.aio joins its poller thread when the last channel or server of the
            # process goes away, wherever that happens (a garbage-collected channel).
            function.can_block_in("threading.py", {"join"})
        yield

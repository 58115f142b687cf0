"""Shared pytest configuration: hypothesis profile for a loaded 2-core CI machine, the
throwaway PostgreSQL plugin, and a short directory for Unix sockets."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
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

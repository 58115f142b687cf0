"""Fixtures of the HA tests: real in-process agents (`lockd.runtime.agent_app.AgentApp`)
for replicas started by the tests themselves, stopped at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.helpers import Cluster


@pytest.fixture
async def nodes(tmp_path: Path, socket_dir: Path) -> AsyncIterator[Cluster]:
    """Starts agents with `await nodes.start_agent(addresses=(...), ...)`."""
    manager = Cluster(tmp_path, socket_dir)
    try:
        yield manager
    finally:
        await manager.close()

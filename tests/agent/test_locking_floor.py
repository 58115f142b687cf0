"""`agent_service.locking_mode`: a node's own minimum locking mode."""

from __future__ import annotations

import pytest

from lockd.client import SessionDenied
from lockd.config import parse_config
from lockd.domain.errors import ValidationError
from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.domain.modes import LockingMode
from tests.agent.helpers import Cluster, user_lock

AGENT = {"enabled": True, "auth_servers": ["127.0.0.1:3025"], "insecure": True}


def test_the_local_minimum_is_read_and_validated() -> None:
    """best_effort by default; strict when configured; anything else names the key."""
    default = parse_config({"data_dir": "/tmp/x", "agent_service": AGENT}, env={})
    assert default.agent_service.locking_mode is LockingMode.BEST_EFFORT
    strict = parse_config(
        {"data_dir": "/tmp/x", "agent_service": {**AGENT, "locking_mode": "strict"}}, env={}
    )
    assert strict.agent_service.locking_mode is LockingMode.STRICT
    with pytest.raises(ValidationError, match=r'agent_service\.locking_mode.*"lax" not supported'):
        parse_config(
            {"data_dir": "/tmp/x", "agent_service": {**AGENT, "locking_mode": "lax"}}, env={}
        )


async def test_a_strict_node_is_strict_in_a_best_effort_cluster(cluster: Cluster) -> None:
    """With the floor at strict every interaction on the node is strict: allowed while
    synced, locked out while the view is unreliable (here: before the first sync)."""
    auth = await cluster.start_auth()
    await auth.client().create_lock(user_lock("l1", user="mallory"))
    agent = await cluster.start_agent(locking_floor=LockingMode.STRICT)
    decision = await agent.client.check_access(Identity(user="alice"))
    assert (decision.allowed, decision.mode) == (True, LockingMode.STRICT)
    with pytest.raises(SessionDenied, match="is in force"):
        await agent.open(Identity(user="mallory"))

    await auth.stop()
    offline = await cluster.start_agent(
        locking_floor=LockingMode.STRICT, name="offline", persist=False, wait_synced=False
    )
    decision = await offline.client.check_access(Identity(user="alice"))
    assert (decision.allowed, decision.reason) == (False, STRICT_LOCKOUT_MESSAGE)

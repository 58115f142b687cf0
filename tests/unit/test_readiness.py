"""lockd.domain.readiness: when the auth server and an agent count as ready."""

from __future__ import annotations

import pytest

from lockd.domain.modes import LockingMode
from lockd.domain.readiness import agent_readiness, auth_readiness
from lockd.domain.view import SyncState


def test_the_auth_server_is_ready_only_while_started_serving_and_its_store_answers() -> None:
    """Loading, an unhealthy store and stopping are all not ready, each with its reason."""
    assert auth_readiness(True, False, True).ready
    assert not auth_readiness(False, False, True).ready
    assert "store is unhealthy" in auth_readiness(True, False, False).detail
    assert auth_readiness(True, True, True).detail == "auth server stopping"


@pytest.mark.parametrize("state", [SyncState.SYNCED, SyncState.DEGRADED])
@pytest.mark.parametrize("mode", list(LockingMode))
def test_a_synced_or_degraded_agent_is_ready_in_either_mode(
    state: SyncState, mode: LockingMode
) -> None:
    """SYNCED and DEGRADED (heartbeats late, view still enforced) serve in both modes."""
    assert agent_readiness(state, True, mode, 7).ready


def test_an_agent_without_any_view_is_not_ready() -> None:
    """Never synced and nothing persisted: it has no locks to enforce."""
    readiness = agent_readiness(SyncState.SYNCING, False, LockingMode.BEST_EFFORT, 0)
    assert not readiness.ready
    assert readiness.detail == "agent syncing: no lock view yet"


@pytest.mark.parametrize("state", [SyncState.SYNCING, SyncState.STALE])
def test_an_unconfirmed_view_is_ready_in_best_effort_but_not_in_strict(state: SyncState) -> None:
    """A persisted or stale view is enforced in best_effort; strict refuses, so not ready."""
    assert agent_readiness(state, True, LockingMode.BEST_EFFORT, 3).ready
    strict = agent_readiness(state, True, LockingMode.STRICT, 3)
    assert not strict.ready
    assert "strict interactions refused" in strict.detail

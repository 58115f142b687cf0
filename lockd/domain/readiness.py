"""Readiness: whether a lockd service should receive traffic now (pure).

Kubernetes readiness probes, Docker's HEALTHCHECK, load balancers and systemd's READY=1
all ask this one question. The auth server is ready while it serves (store loaded and
healthy). An agent is ready while what it answers can be relied on in the cluster's
mode: SYNCED or DEGRADED (it keeps enforcing the locks it knows, heartbeats late); in
best_effort also with a view it has not (yet) confirmed — a persisted one after a
restart, or a STALE one — since best_effort enforces the last known locks. A strict
cluster's agent without a fresh view refuses every strict interaction: not ready.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockd.domain.modes import LockingMode
from lockd.domain.view import SyncState


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    detail: str  # one line for a probe's body, `lockd health` and systemd's STATUS=


def auth_readiness(started: bool, stopping: bool, store_healthy: bool) -> Readiness:
    """The auth server: serving once its store is loaded, while the store answers."""
    if stopping:
        return Readiness(False, "auth server stopping")
    if not started:
        return Readiness(False, "auth server starting: loading the store")
    if not store_healthy:
        return Readiness(False, "auth server not serving: the store is unhealthy")
    return Readiness(True, "auth server serving")


def agent_readiness(
    state: SyncState, has_view: bool, cluster_mode: LockingMode, revision: int
) -> Readiness:
    """The node agent, from its sync state, whether it holds any view, and the mode an
    interaction without roles gets (the cluster default, or the agent's strict floor)."""
    where = f"view at revision {revision}"
    if state is SyncState.SYNCED:
        return Readiness(True, f"agent synced, {where}")
    if state is SyncState.DEGRADED:
        return Readiness(True, f"agent degraded (heartbeats late), enforcing its {where}")
    if not has_view:
        return Readiness(False, "agent syncing: no lock view yet")
    if cluster_mode is LockingMode.BEST_EFFORT:
        return Readiness(True, f"agent {state.value}, enforcing its last known {where}")
    return Readiness(False, f"agent {state.value} in strict mode: strict interactions refused")

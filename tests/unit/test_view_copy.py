"""A sidecar's copy of the agent's view decides as the agent would, and stays strict when
it cannot be trusted (docs/sidecar-api.md, "what a sidecar-local decision guarantees")."""

from __future__ import annotations

from datetime import UTC, datetime

from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE, Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ReplicatedResource, Role
from lockd.domain.view import SyncState
from lockd.domain.view_copy import ViewCopy

WALL = datetime(2026, 1, 1, tzinfo=UTC)
STRICT = Identity(user="olga", roles=("ops",))
BEST = Identity(user="bob")


def loaded(floor: LockingMode = LockingMode.BEST_EFFORT) -> ViewCopy:
    copy = ViewCopy("node-1", silence_bound=3.0, locking_floor=floor)
    resources: list[ReplicatedResource] = [
        Role("ops", lock_mode=LockingMode.STRICT),
        Lock("l1", LockTarget(user="alice")),
    ]
    copy.apply_snapshot("e1", 7, resources, 0.0, WALL)
    copy.apply_loaded()
    return copy


def test_the_copy_is_not_ready_until_the_agent_vouched_for_it() -> None:
    """Loaded but only reported syncing: not ready (ask the agent); synced: ready."""
    copy = loaded()
    assert not copy.ready()
    copy.report(SyncState.SYNCING, 0.0, 1.0)
    assert not copy.ready()
    copy.report(SyncState.SYNCED, 60.0, 1.0)
    assert copy.ready()


def test_a_report_is_trusted_for_the_shorter_of_reliable_for_and_the_silence_bound() -> None:
    """Reliable for 60 s but silent for more than 3 s: stale, strict refused with the
    lock-out text; best_effort still decided on the last locks."""
    copy = loaded()
    copy.report(SyncState.SYNCED, 60.0, 10.0)
    assert copy.decide(STRICT, 12.9, WALL).allowed
    stale = copy.decide(STRICT, 13.1, WALL)
    assert (stale.allowed, stale.reason) == (False, STRICT_LOCKOUT_MESSAGE)
    assert copy.decide(BEST, 13.1, WALL).allowed
    assert copy.decide(Identity(user="alice"), 13.1, WALL).lock_name == "l1"
    copy.report(SyncState.DEGRADED, 1.0, 20.0)
    assert copy.sync_state(20.5) is SyncState.DEGRADED
    assert copy.sync_state(21.5) is SyncState.STALE


def test_losing_the_agent_ends_the_trust_at_once() -> None:
    """After lose_agent the copy is stale whatever the last report said."""
    copy = loaded()
    copy.report(SyncState.SYNCED, 60.0, 0.0)
    copy.lose_agent()
    assert copy.sync_state(0.1) is SyncState.STALE
    assert not copy.decide(STRICT, 0.1, WALL).allowed


def test_the_agents_local_minimum_mode_applies_in_the_copy() -> None:
    """With the agent's locking_floor strict, everyone is strict in the copy too."""
    copy = loaded(LockingMode.STRICT)
    copy.report(SyncState.SYNCED, 60.0, 0.0)
    assert copy.decide(BEST, 1.0, WALL).mode is LockingMode.STRICT

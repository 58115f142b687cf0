"""A sidecar's read-only copy of its agent's view, for decisions in the sidecar's process.

The agent streams its view over the sidecar's channel: a snapshot, then every event
batch it applies (the same epoch and revisions), then `ViewFreshness` reports. The
copy is a `LocalView` fed with those, so it decides with the agent's own code: the same
locks, roles, cluster mode and local minimum mode (`locking_floor`), the same matching.

Only freshness differs. The copy cannot see the auth server; it trusts what the agent
reports, and only for a while: a report that the agent's view is reliable counts until
the agent's own view would turn stale, and never longer than `silence_bound` seconds
without a newer report (the channel might be stuck). Losing the channel ends the trust
at once. An untrusted copy is STALE, so strict interactions are refused with the
lock-out message, exactly as the agent refuses them with a stale view; best_effort ones
are decided on the last locks the copy knows, as the agent does with its last view.
"""

from __future__ import annotations

from lockd.domain.modes import LockingMode
from lockd.domain.view import RELIABLE_STATES, LocalView, SyncState, ViewSettings


class ViewCopy(LocalView):
    def __init__(
        self,
        server_id: str,
        silence_bound: float,
        locking_floor: LockingMode = LockingMode.BEST_EFFORT,
    ) -> None:
        super().__init__(ViewSettings(server_id, locking_floor=locking_floor))
        self.silence_bound = silence_bound
        self.loaded = False
        self._reported: SyncState | None = None
        self._trusted_until: float | None = None
        self._vouched = False

    def apply_loaded(self) -> None:
        """The first snapshot arrived: the copy holds the agent's whole view."""
        self.loaded = True

    def report(self, state: SyncState, reliable_for: float, now: float) -> None:
        """The agent's ViewFreshness, received at `now` (this process's monotonic clock)."""
        self._reported = state
        if state in RELIABLE_STATES:
            self._vouched = True
            self._trusted_until = now + min(reliable_for, self.silence_bound)
        else:
            self._trusted_until = None

    def lose_agent(self) -> None:
        """The channel ended: nothing vouches for the copy any more."""
        self._trusted_until = None
        if self._reported is not None:
            self._reported = SyncState.STALE

    def ready(self) -> bool:
        """Loaded, and the agent has vouched for it at least once. Before that the agent
        may still be deciding on modes it assumes (no view yet): ask it instead."""
        return self.loaded and self._vouched

    def sync_state(self, now: float) -> SyncState:
        reported = self._reported
        if reported is None:
            return SyncState.SYNCING
        if reported in RELIABLE_STATES:
            trusted = self._trusted_until is not None and now <= self._trusted_until
            return reported if trusted else SyncState.STALE
        return reported

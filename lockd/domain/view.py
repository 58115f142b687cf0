"""The node agent's local view: replicated state, freshness, sessions and decisions.

Pure and synchronous ("decide, then do IO"): every method takes the current times,
updates the view and returns what must happen — the `Termination`s the async layer
then signals to sidecars. Because nothing here awaits, registering a session (check +
subscribe) and applying a batch of events are each atomic on the event loop: no lock can
fall between a session's check and its subscription.

Freshness (DESIGN §4): `fresh_at` is the last time the agent held proof that its view
equalled the server's revision (snapshot end, an event batch, or a heartbeat at the
applied revision from a healthy store). SYNCING until the first proof in this process;
SYNCED while proofs keep coming; DEGRADED after `missed_heartbeats` intervals without
one, while disconnected or when the server says its store is unhealthy; STALE after
`max_staleness`. Strict interactions need SYNCED or DEGRADED; a view loaded from disk
and never confirmed counts as unreliable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from lockd.domain.errors import PreconditionError
from lockd.domain.events import Event, EventType, ReplicatedState, StreamedResource, apply_change
from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE, Lock, TargetPair
from lockd.domain.lock_table import LockTable, PackedLock, PackedRun
from lockd.domain.modes import LockingMode, resolve_mode
from lockd.domain.resources import ClusterAuthPreference, Kind, Role
from lockd.domain.sessions import NO_METADATA, SessionMetadata, SessionRecord, SessionRegistry

# A lock as an event or snapshot carries it (a tuple: isinstance is faster than with A | B).
_LOCK_FORMS = (PackedLock, Lock)


class SyncState(StrEnum):
    SYNCING = "syncing"
    SYNCED = "synced"
    DEGRADED = "degraded"
    STALE = "stale"


RELIABLE_STATES = frozenset({SyncState.SYNCED, SyncState.DEGRADED})


class TerminationCause(StrEnum):
    LOCK = "lock"
    SERVER_LOCK = "server_lock"
    STRICT_STALE = "strict_stale"


class ViewMismatch(PreconditionError):
    """The stream says something the view cannot follow (gap, other epoch, older state).

    The agent drops the stream and resumes; nothing from the message was applied.
    """


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    mode: LockingMode
    reason: str = ""
    lock_name: str = ""


@dataclass(frozen=True, slots=True)
class Termination:
    session_id: str
    identity: Identity
    reason: str
    lock_name: str
    cause: TerminationCause
    # The sidecar channel the session was registered on, and what it said about it.
    owner: str = ""
    metadata: SessionMetadata = NO_METADATA


@dataclass(frozen=True, slots=True)
class ViewSettings:
    server_id: str
    max_staleness: timedelta = timedelta(minutes=5)
    missed_heartbeats: int = 3
    heartbeat_interval: timedelta = timedelta(seconds=5)
    # The local minimum (agent_service.locking_mode): strict here makes every
    # interaction strict, whatever the cluster says.
    locking_floor: LockingMode = LockingMode.BEST_EFFORT


@dataclass(slots=True)
class _Incoming:
    """A snapshot being applied: where it leads, and what it has named so far."""

    epoch: str
    revision: int
    # The locks named so far; None when the view held none as the snapshot began: then
    # nothing is left to drop at its end, and a cold start tracks no names.
    locks: set[str] | None
    count: int = 0
    roles: set[str] = field(default_factory=set)
    preference: bool = False


@dataclass(frozen=True, slots=True)
class AssumedModes:
    """The cluster's modes as the agent assumes them while it holds no view that says
    them (its persisted view was lost): the cluster default and the strict roles."""

    cluster: LockingMode
    strict_roles: frozenset[str] = frozenset()


class LocalView:
    def __init__(
        self,
        settings: ViewSettings,
        state: ReplicatedState | None = None,
        assumed: AssumedModes | None = None,
    ) -> None:
        self.settings = settings
        self.state = state if state is not None else ReplicatedState()
        # Replaced by the cluster's own modes at the first snapshot.
        self.assumed = assumed
        # The locks, compact and indexed; the state holds this very table.
        self.locks = _table_of(self.state)
        self._incoming: _Incoming | None = None
        self.heartbeat_interval = settings.heartbeat_interval.total_seconds()
        self.fresh_at: float | None = None
        self._stale_after = settings.max_staleness.total_seconds()
        self.connected = False
        self.store_healthy = True
        self.sessions = SessionRegistry()

    # -- freshness -------------------------------------------------------------------

    def sync_state(self, now: float) -> SyncState:
        if self.fresh_at is None:
            return SyncState.SYNCING
        age = now - self.fresh_at
        if age > self._stale_after:
            return SyncState.STALE
        missed = age > self.settings.missed_heartbeats * self.heartbeat_interval
        if missed or not self.connected or not self.store_healthy:
            return SyncState.DEGRADED
        return SyncState.SYNCED

    def reliable(self, now: float) -> bool:
        return self.sync_state(now) in RELIABLE_STATES

    def age(self, now: float) -> float | None:
        """Seconds since the last proof of freshness (None: never in this process)."""
        return None if self.fresh_at is None else now - self.fresh_at

    def tick(self, now: float, wall: datetime) -> list[Termination]:
        """Evaluate freshness; while unreliable, end every strict session."""
        if self.reliable(now):
            return []
        doomed = [record for record in self.sessions if self._is_strict(record.identity)]
        return [
            self._terminate(record, STRICT_LOCKOUT_MESSAGE, "", TerminationCause.STRICT_STALE)
            for record in doomed
        ]

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        if not connected:
            self.abandon_snapshot()  # a snapshot never continues on another stream

    # -- replication -----------------------------------------------------------------

    def apply_snapshot(
        self,
        epoch: str,
        revision: int,
        resources: Iterable[StreamedResource],
        now: float,
        wall: datetime,
    ) -> list[Termination]:
        """Swap in a complete state at (epoch, revision); end sessions newly locked."""
        self.begin_snapshot(epoch, revision)
        resources = list(resources)
        ended = self.add_to_snapshot(resources, wall)
        return ended + self.end_snapshot(epoch, revision, len(resources), now)

    def begin_snapshot(self, epoch: str, revision: int) -> None:
        """A snapshot at (epoch, revision) starts; its chunks follow (`add_to_snapshot`).

        Chunks are applied in place, as they arrive, so no second copy of the view is
        ever built; `end_snapshot` then drops what the snapshot did not name. Between
        chunks the view holds every lock of the old view or of the snapshot (a changed
        lock in its new version): never fewer locks than either state, so a decision
        taken meanwhile refuses at least what both would.
        """
        if epoch == self.state.epoch and revision < self.state.revision:
            raise ViewMismatch(
                f"snapshot at revision {revision} is older than the applied {self.state.revision}"
            )
        self._incoming = _Incoming(epoch, revision, set() if self.locks else None)

    def add_to_snapshot(
        self,
        resources: Sequence[StreamedResource],
        wall: datetime,
        run: PackedRun | None = None,
    ) -> list[Termination]:
        """Apply one chunk of the snapshot (its packed locks, if any, as a `run`); end
        sessions that a new or changed lock hits."""
        incoming = self._incoming
        if incoming is None:
            raise ViewMismatch("snapshot chunk without SnapshotBegin")
        incoming.count += len(resources)
        changed: list[Lock | PackedLock] = []
        state, named, put = self.state, incoming.locks, self.locks.put
        may_hit = bool(self.sessions)  # no session: no lock to collect for terminations
        if run is not None:
            incoming.count += len(run.names)
            if named is not None:
                named.update(run.names)
            positions = self.locks.put_run(run)
            if may_hit:
                changed.extend(map(run.lock, positions))
        for resource in resources:
            if isinstance(resource, _LOCK_FORMS):
                if named is not None:
                    named.add(resource.name)
                if put(resource) and may_hit:
                    changed.append(resource)
            elif isinstance(resource, Role):
                incoming.roles.add(resource.name)
                state.roles[resource.name] = resource
            else:
                incoming.preference = True
                state.cluster_auth_preference = resource
        return self._terminate_hits(changed, wall)

    def end_snapshot(self, epoch: str, revision: int, count: int, now: float) -> list[Termination]:
        """The snapshot is complete: drop what it did not name and take its revision.

        Raises ViewMismatch if it is not the snapshot that began or its count differs.
        """
        incoming, self._incoming = self._incoming, None
        if incoming is None or (incoming.epoch, incoming.revision) != (epoch, revision):
            raise ViewMismatch(f"snapshot end {epoch}/{revision} does not match its begin")
        if incoming.count != count:
            raise ViewMismatch("snapshot ended with a different count than it sent")
        state = self.state
        named = incoming.locks
        for name in [] if named is None else [name for name in self.locks if name not in named]:
            self.locks.remove(name)
        for name in [name for name in state.roles if name not in incoming.roles]:
            del state.roles[name]
        if not incoming.preference:  # the server always sends it; the default otherwise
            state.cluster_auth_preference = ClusterAuthPreference()
        state.epoch, state.revision = epoch, revision
        self.assumed = None  # the snapshot says the cluster's modes
        self.fresh_at, self.store_healthy = now, True
        return []

    def abandon_snapshot(self) -> None:
        """The stream ended inside a snapshot. The view keeps what was applied (every old
        lock, and the snapshot's newer versions) at its old revision: resuming from
        there replays what changed, and a new snapshot drops what is gone."""
        self._incoming = None

    def apply_events(
        self,
        epoch: str,
        from_revision: int,
        to_revision: int,
        events: Sequence[Event],
        now: float,
        wall: datetime,
    ) -> list[Termination]:
        """Apply one contiguous batch; a gap or another epoch raises ViewMismatch."""
        state = self.state
        if epoch != state.epoch:
            raise ViewMismatch(f"events of epoch {epoch}, view is at epoch {state.epoch}")
        if to_revision <= state.revision:
            return []  # already applied (a duplicate after resume): never go back
        if from_revision != state.revision + 1 or not _contiguous(
            events, from_revision, to_revision
        ):
            raise ViewMismatch(
                f"events {from_revision}..{to_revision} do not follow revision {state.revision}"
            )
        put_locks: list[Lock | PackedLock] = []
        locks = self.locks
        for event in events:
            if event.kind is not Kind.LOCK:
                apply_change(state, event)
            elif event.type is not EventType.PUT:
                locks.remove(event.name)
            elif isinstance(event.resource, _LOCK_FORMS):
                locks.put(event.resource)
                put_locks.append(event.resource)
            else:
                apply_change(state, event)  # refuses a PUT that carries no lock
        state.revision = to_revision
        self.fresh_at, self.store_healthy = now, True
        return self._terminate_hits(put_locks, wall) if put_locks and self.sessions else []

    def heartbeat(
        self, epoch: str, revision: int, healthy: bool, interval: float, now: float
    ) -> None:
        """A heartbeat at the applied revision proves freshness (if the store is healthy)."""
        if epoch != self.state.epoch or revision != self.state.revision:
            raise ViewMismatch(
                f"heartbeat at {epoch}/{revision}, view at {self.state.epoch}/{self.state.revision}"
            )
        if interval > 0:
            self.heartbeat_interval = interval
        self.store_healthy = healthy
        if healthy:
            self.fresh_at = now

    # -- sessions and decisions ------------------------------------------------------

    def mode_for(self, identity: Identity) -> LockingMode:
        if self.settings.locking_floor is LockingMode.STRICT:
            return LockingMode.STRICT
        assumed = self.assumed
        if assumed is not None and (
            assumed.cluster is LockingMode.STRICT
            or not assumed.strict_roles.isdisjoint(identity.roles)
        ):
            return LockingMode.STRICT
        roles = self.state.roles
        if not roles or not identity.roles:
            return resolve_mode(self.state.cluster_auth_preference.locking_mode, ())
        return resolve_mode(
            self.state.cluster_auth_preference.locking_mode,
            (roles[name].lock_mode for name in identity.roles if name in roles),
        )

    def _is_strict(self, identity: Identity) -> bool:
        return self.mode_for(identity) is LockingMode.STRICT

    def decide(self, identity: Identity, now: float, wall: datetime) -> Decision:
        """Allowed or not for a new request from `identity` (served by this agent)."""
        # As served by this agent (its server_id), without building that identity.
        return self._decide(identity, identity.query_targets_on(self.settings.server_id), now, wall)

    def _decide(
        self, identity: Identity, targets: tuple[TargetPair, ...], now: float, wall: datetime
    ) -> Decision:
        mode = self.mode_for(identity)
        hit = self.locks.first_hit(targets, wall)
        if hit is not None:
            return Decision(False, mode, hit.in_force_message(), hit.name)
        if mode is LockingMode.STRICT and not self.reliable(now):
            return Decision(False, mode, STRICT_LOCKOUT_MESSAGE)
        return Decision(True, mode)

    def open_session(
        self,
        session_id: str,
        identity: Identity,
        now: float,
        wall: datetime,
        *,
        owner: str = "",
        metadata: SessionMetadata = NO_METADATA,
    ) -> Decision:
        """Check and, when allowed, subscribe the session — in one step.

        Session ids are unique per `owner` (a sidecar channel); a live one is refused.
        """
        if (owner, session_id) in self.sessions:
            raise PreconditionError(f'session "{session_id}" is already registered')
        targets = identity.query_targets_on(self.settings.server_id)  # once, for both
        decision = self._decide(identity, targets, now, wall)
        if decision.allowed:
            served = identity.on_server(self.settings.server_id)
            self.sessions.add(SessionRecord(owner, session_id, served, metadata), targets)
        return decision

    def close_session(self, session_id: str, owner: str = "") -> None:
        self.sessions.remove((owner, session_id))

    def close_owner(self, owner: str) -> list[SessionRecord]:
        """Unregister every session of a sidecar channel (the channel ended)."""
        return self.sessions.remove_owner(owner)

    @property
    def session_count(self) -> int:
        return len(self.sessions)

    def _terminate_hits(
        self, locks: Iterable[Lock | PackedLock], wall: datetime
    ) -> list[Termination]:
        ended: list[Termination] = []
        if not self.sessions:
            return ended
        for put in locks:
            if put.expires is not None and not wall < put.expires:
                continue  # not in force
            if isinstance(put, PackedLock):
                hit = self.sessions.hit_by(put.pairs)
                lock = put.unpack() if hit else None  # only a lock that hits is built
            else:
                hit, lock = self.sessions.hit_by(put.target.pairs()), put
            if lock is None or not hit:
                continue
            cause = (
                TerminationCause.SERVER_LOCK
                if lock.target.server_id == self.settings.server_id
                else TerminationCause.LOCK
            )
            reason = lock.in_force_message()
            for record in hit:
                ended.append(self._terminate(record, reason, lock.name, cause))
        return ended

    def _terminate(
        self, record: SessionRecord, reason: str, lock_name: str, cause: TerminationCause
    ) -> Termination:
        self.sessions.remove(record.key)
        return Termination(
            record.session_id,
            record.identity,
            reason,
            lock_name,
            cause,
            record.owner,
            record.metadata,
        )


def _table_of(state: ReplicatedState) -> LockTable:
    """The state's locks as a LockTable (converting a plain dict, e.g. a loaded view)."""
    if not isinstance(state.locks, LockTable):
        state.locks = LockTable(state.locks.values())
    return state.locks


def _contiguous(events: Sequence[Event], first: int, last: int) -> bool:
    """One event per revision, exactly `first..last`: a batch that claims revisions it
    does not carry would otherwise advance the view past changes it never saw."""
    if len(events) != last - first + 1:
        return False
    if len(events) == 1:
        return events[0].revision == first
    return all(event.revision == first + offset for offset, event in enumerate(events))

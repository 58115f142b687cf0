"""The sidecar channels of a node agent: registrations, fate sharing, batched terminations
and the view streamed to sidecars that decide in-process.

One `SidecarChannel` per sidecar stream. The hub keeps no per-session asyncio object: a
session is a `SessionRecord` in the view's registry, keyed by its channel, so 10,000
sessions cost 10,000 small records, and ending a channel unregisters all of its sessions.

Everything that decides runs synchronously on the event loop, so each step is atomic:
a registration batch is checked and subscribed at one view revision, and applying an
event batch ends its sessions and queues the channel messages in the same step. Frames
are bytes from a `SidecarEncoder` (protobuf in `lockd.api.session_channel`), so this
module needs no gRPC.

Each channel has two FIFO queues. Session messages (results, terminations) go first; view
frames (snapshot, events, freshness) after them. Terminations are therefore never stuck
behind a large snapshot, and a sidecar whose copy reached revision R has already received
every termination of the events up to R.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import structlog

from lockd.domain.errors import LockdError, UnavailableError, ValidationError
from lockd.domain.events import Event
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ReplicatedResource
from lockd.domain.sessions import SessionMetadata, SessionRecord, validate_registration
from lockd.domain.view import RELIABLE_STATES, Decision, SyncState, Termination, TerminationCause
from lockd.obs import audit

if TYPE_CHECKING:
    from lockd.agent.runtime import AgentRuntime

_log = structlog.get_logger("lockd.agent.sidecars")

MAX_BATCH = 1000
MAX_MESSAGE_BYTES = 1 << 20
# Bytes queued for a channel before it counts as a sidecar that stopped reading.
MAX_QUEUED_BYTES = 32 << 20
FRESHNESS_INTERVAL = 1.0
FRESHNESS_CHECK = 0.2
SNAPSHOT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Registration:
    session_id: str
    identity: Identity
    metadata: SessionMetadata
    # Set when the request could not even be read (e.g. an unknown protocol value).
    error: str = ""


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    session_id: str
    decision: Decision | None
    error: str = ""


class SidecarEncoder(Protocol):
    """Encodes the agent's channel messages (the wire format is the adapter's business)."""

    def welcome(self, server_id: str, channel_id: str, locking_floor: LockingMode) -> bytes: ...

    def registered(
        self, request_id: int, revision: int, results: Sequence[RegistrationResult]
    ) -> bytes: ...

    def terminated(
        self,
        session_ids: Sequence[str],
        reason: str,
        lock_name: str,
        cause: TerminationCause,
        revision: int,
    ) -> bytes: ...

    def events(self, epoch: str, events: Sequence[Event]) -> bytes: ...

    def snapshot_begin(self, epoch: str, revision: int, count: int) -> bytes: ...

    def snapshot_chunk(self, resources: Sequence[ReplicatedResource]) -> bytes: ...

    def snapshot_end(self, epoch: str, revision: int, count: int) -> bytes: ...

    def freshness(self, state: SyncState, revision: int, reliable_for: float) -> bytes: ...


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """A view snapshot to send: the resources were copied when it was queued (they are
    immutable), and are encoded chunk by chunk while being written."""

    epoch: str
    revision: int
    resources: list[ReplicatedResource]

    def frames(self, encoder: SidecarEncoder) -> Iterator[bytes]:
        count = len(self.resources)
        yield encoder.snapshot_begin(self.epoch, self.revision, count)
        for start in range(0, count, SNAPSHOT_CHUNK):
            yield encoder.snapshot_chunk(self.resources[start : start + SNAPSHOT_CHUNK])
        yield encoder.snapshot_end(self.epoch, self.revision, count)


class SidecarChannel:
    """One sidecar's stream as the agent sees it: who, and what is queued for it."""

    def __init__(
        self, channel_id: str, sidecar: str, wants_view: bool, encoder: SidecarEncoder
    ) -> None:
        self.channel_id = channel_id
        self.sidecar = sidecar
        self.wants_view = wants_view
        self._encoder = encoder
        self._sessions: deque[bytes] = deque()
        self._view: deque[bytes | _Snapshot] = deque()
        self._queued = 0
        self._wake: asyncio.Future[None] | None = None
        # Why the channel ends: an error for the sidecar, or None for a clean end.
        self.failure: LockdError | None = None
        self.ended = False

    def push(self, frame: bytes) -> None:
        self._sessions.append(frame)
        self._count(len(frame))

    def push_view(self, item: bytes | _Snapshot) -> None:
        self._view.append(item)
        self._count(len(item) if isinstance(item, bytes) else 0)

    def _count(self, size: int) -> None:
        self._queued += size
        if self._queued > MAX_QUEUED_BYTES and not self.ended:
            self.end(
                UnavailableError(
                    f"slow consumer: more than {MAX_QUEUED_BYTES >> 20} MiB queued for this "
                    "channel; its sessions are unregistered, reconnect and register them again"
                )
            )
        self._notify()

    def end(self, failure: LockdError | None = None) -> None:
        """End the channel: its writer stops (raising `failure`, if any) at once."""
        if not self.ended:
            self.ended = True
            self.failure = failure
        self._notify()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def frames(self) -> AsyncIterator[bytes]:
        """Every frame in order (session messages first) until the channel ends."""
        while True:
            if self.ended:
                if self.failure is not None:
                    raise self.failure
                return
            if self._sessions:
                frame = self._sessions.popleft()
                self._queued -= len(frame)
                yield frame
            elif self._view:
                item = self._view.popleft()
                if isinstance(item, bytes):
                    self._queued -= len(item)
                    yield item
                else:
                    for frame in item.frames(self._encoder):
                        # Session messages queued meanwhile overtake the rest of it.
                        while self._sessions and not self.ended:
                            urgent = self._sessions.popleft()
                            self._queued -= len(urgent)
                            yield urgent
                        yield frame
            else:
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
                self._wake = None


class SessionHub:
    """Every sidecar channel of the agent, and the sessions registered on them."""

    def __init__(self, runtime: AgentRuntime, encoder: SidecarEncoder) -> None:
        self._runtime = runtime
        self._encoder = encoder
        self.channels: dict[str, SidecarChannel] = {}
        self._ids = itertools.count(1)
        self._unaudited: list[audit.AuditEvent] = []
        self._auditor: asyncio.Task[None] | None = None
        metrics = runtime.metrics
        self._registrations = {
            result: metrics.session_registrations_total.labels(result=result)
            for result in ("allowed", "denied", "invalid")
        }
        runtime.listen(self)

    @property
    def server_id(self) -> str:
        return self._runtime.server_id

    # -- channels ---------------------------------------------------------------------

    def open_channel(self, sidecar: str, wants_view: bool) -> SidecarChannel:
        channel_id = f"channel-{next(self._ids)}"
        channel = SidecarChannel(channel_id, sidecar, wants_view, self._encoder)
        self.channels[channel_id] = channel
        floor = self._runtime.view.settings.locking_floor
        channel.push(self._encoder.welcome(self.server_id, channel_id, floor))
        if wants_view:
            state = self._runtime.view.state
            channel.push_view(_Snapshot(state.epoch, state.revision, state.resources()))
            channel.push_view(self._freshness())
        self._runtime.metrics.sidecar_channels.set(len(self.channels))
        _log.info("sidecar channel opened", channel=channel_id, sidecar=sidecar, view=wants_view)
        return channel

    def close_channel(self, channel: SidecarChannel, why: str) -> None:
        """Fate sharing: the channel ended, so every session on it is unregistered."""
        if self.channels.pop(channel.channel_id, None) is None:
            return
        records = self._runtime.view.close_owner(channel.channel_id)
        self._sessions_changed()
        self._runtime.metrics.sidecar_channels.set(len(self.channels))
        _log.info(
            "sidecar channel closed",
            channel=channel.channel_id,
            sidecar=channel.sidecar,
            sessions_unregistered=len(records),
            why=why,
        )

    def close_all(self, reason: str) -> None:
        """End every channel (the agent is stopping); sidecars see UNAVAILABLE."""
        for channel in list(self.channels.values()):
            channel.end(UnavailableError(reason))

    # -- sessions ---------------------------------------------------------------------

    def register(
        self, channel: SidecarChannel, request_id: int, registrations: Sequence[Registration]
    ) -> None:
        """Check and subscribe every session of the batch at one revision; answer at once."""
        runtime = self._runtime
        view = runtime.view
        now, wall = runtime.clock.monotonic(), runtime.clock.now()
        results: list[RegistrationResult] = []
        for registration in registrations:
            results.append(self._register_one(channel, registration, now, wall))
        channel.push(self._encoder.registered(request_id, view.state.revision, results))
        self._sessions_changed()
        self._audit_soon()

    def _register_one(
        self, channel: SidecarChannel, registration: Registration, now: float, wall: datetime
    ) -> RegistrationResult:
        runtime = self._runtime
        session_id = registration.session_id
        metadata = registration.metadata
        if metadata.started_at is None:
            metadata = SessionMetadata(
                metadata.protocol, metadata.remote_address, metadata.target_resource, wall
            )
        try:
            if registration.error:
                raise ValidationError(registration.error)
            validate_registration(session_id, registration.identity, metadata)
            decision = runtime.view.open_session(
                session_id,
                registration.identity,
                now,
                wall,
                owner=channel.channel_id,
                metadata=metadata,
            )
        except LockdError as error:
            self._registrations["invalid"].inc()
            return RegistrationResult(session_id, None, str(error))
        runtime.count_decision(decision)
        served = registration.identity.on_server(self.server_id)
        cluster = runtime.owner.cluster
        if decision.allowed:
            self._registrations["allowed"].inc()
            record = SessionRecord(channel.channel_id, session_id, served, metadata)
            self._unaudited.append(audit.session_start(record, channel.sidecar, cluster, wall))
        else:
            self._registrations["denied"].inc()
            self._unaudited.append(
                audit.session_rejected(
                    SessionRecord(channel.channel_id, session_id, served, metadata),
                    channel.sidecar,
                    decision.reason,
                    decision.mode,
                    decision.lock_name,
                    cluster,
                    wall,
                )
            )
        return RegistrationResult(session_id, decision)

    def unregister(self, channel: SidecarChannel, session_ids: Sequence[str]) -> None:
        view = self._runtime.view
        for session_id in session_ids:
            view.close_session(session_id, channel.channel_id)
        self._sessions_changed()

    def sidecar_of(self, owner: str) -> str:
        channel = self.channels.get(owner)
        return "" if channel is None else channel.sidecar

    def _sessions_changed(self) -> None:
        metrics = self._runtime.metrics
        view = self._runtime.view
        metrics.sessions.set(view.session_count)
        for protocol, count in view.sessions.by_protocol().items():
            metrics.sessions_by_protocol.labels(protocol=protocol.value or "unspecified").set(count)

    def _audit_soon(self) -> None:
        """Audit lines are written just after the answers go out, not before."""
        if not self._unaudited or (self._auditor is not None and not self._auditor.done()):
            return
        self._auditor = asyncio.get_running_loop().create_task(self._write_audit())

    async def _write_audit(self) -> None:
        await asyncio.sleep(0)
        self.flush_audit()

    def flush_audit(self) -> None:
        events, self._unaudited = self._unaudited, []
        for event in events:
            self._runtime.audit.emit(event)

    # -- what the runtime tells the hub -------------------------------------------------

    def sessions_terminated(self, terminations: Sequence[Termination]) -> None:
        """One message per (channel, lock event) carrying every hit session id."""
        groups: dict[tuple[str, str, str, TerminationCause], list[str]] = {}
        for termination in terminations:
            key = (termination.owner, termination.lock_name, termination.reason, termination.cause)
            groups.setdefault(key, []).append(termination.session_id)
        revision = self._runtime.view.state.revision
        for (owner, lock_name, reason, cause), session_ids in groups.items():
            channel = self.channels.get(owner)
            if channel is not None:
                channel.push(
                    self._encoder.terminated(
                        session_ids,
                        reason,
                        lock_name,
                        cause,
                        revision if lock_name else 0,
                    )
                )
        self._observe_propagation({t.lock_name for t in terminations if t.lock_name})
        self._sessions_changed()

    def _observe_propagation(self, lock_names: set[str]) -> None:
        runtime = self._runtime
        now = runtime.clock.now()
        for name in lock_names:
            lock = runtime.view.locks.get(name)
            if lock is not None and lock.created_at is not None:
                delay = (now - lock.created_at).total_seconds()
                runtime.metrics.termination_propagation_seconds.observe(max(0.0, delay))

    def snapshot_applied(self) -> None:
        state = self._runtime.view.state
        for channel in self._view_channels():
            channel.push_view(_Snapshot(state.epoch, state.revision, state.resources()))

    def events_applied(self, epoch: str, events: Sequence[Event]) -> None:
        channels = self._view_channels()
        if channels and events:
            frame = self._encoder.events(epoch, events)  # once for every channel
            for channel in channels:
                channel.push_view(frame)

    def _view_channels(self) -> list[SidecarChannel]:
        return [channel for channel in self.channels.values() if channel.wants_view]

    # -- freshness ----------------------------------------------------------------------

    def _freshness(self) -> bytes:
        runtime = self._runtime
        view = runtime.view
        now = runtime.clock.monotonic()
        state = view.sync_state(now)
        age = view.age(now)
        reliable_for = 0.0
        if state in RELIABLE_STATES and age is not None:
            reliable_for = max(0.0, view.settings.max_staleness.total_seconds() - age)
        return self._encoder.freshness(state, view.state.revision, reliable_for)

    async def freshness_forever(self) -> None:
        """Tell view channels the agent's freshness: on every change, and every second."""
        runtime = self._runtime
        last_state: SyncState | None = None
        last_sent = 0.0
        while True:
            await asyncio.sleep(FRESHNESS_CHECK)
            channels = self._view_channels()
            now = runtime.clock.monotonic()
            state = runtime.view.sync_state(now)
            if channels and (state is not last_state or now - last_sent >= FRESHNESS_INTERVAL):
                frame = self._freshness()
                for channel in channels:
                    channel.push_view(frame)
                last_sent = now
            last_state = state

"""The sidecar channels of a node agent: registrations, fate sharing, batched terminations
and the view streamed to sidecars that decide in-process.

One `SidecarChannel` per sidecar stream. The hub keeps no per-session asyncio object: a
session is a `SessionRecord` in the view's registry, keyed by its channel, so 10,000
sessions cost 10,000 small records, and ending a channel unregisters all of its sessions.

Everything that decides runs synchronously on the event loop, so each step is atomic:
a registration batch is checked and subscribed at one view revision, and applying an
event batch ends its sessions and queues the channel messages in the same step. Frames
are bytes from a `SidecarEncoder` (protobuf in `lockd.api.session_channel_servicer`), so this
module needs no gRPC.

Each channel's queues (`lockd.agent.sidecar_channel`) put session messages before view
frames.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from lockd.agent.sidecar_channel import (
    EndReason,
    Registration,
    RegistrationResult,
    SidecarChannel,
    SidecarEncoder,
    ViewSnapshot,
)
from lockd.domain.errors import LockdError, UnavailableError, ValidationError
from lockd.domain.events import Event
from lockd.domain.sessions import SessionMetadata, SessionRecord, validate_registration
from lockd.domain.view import RELIABLE_STATES, Decision, SyncState, Termination, TerminationCause
from lockd.obs import audit

if TYPE_CHECKING:
    from lockd.agent.runtime import AgentRuntime

_log = structlog.get_logger("lockd.agent.sidecars")

MAX_BATCH = 1000
MAX_MESSAGE_BYTES = 1 << 20
# Session ids per SessionsTerminated: ≤ 1.3 MB with 128-byte ids.
MAX_TERMINATED_IDS = 10_000
FRESHNESS_INTERVAL = 1.0
FRESHNESS_CHECK = 0.2
# Audit lines of a registration burst wait this long, so the answers of the following
# batches are not queued behind them (they are written all the same, and at shutdown).
AUDIT_DELAY = 0.05


class SessionHub:
    """Every sidecar channel of the agent, and the sessions registered on them."""

    def __init__(self, runtime: AgentRuntime, encoder: SidecarEncoder) -> None:
        self._runtime = runtime
        self._encoder = encoder
        self.channels: dict[str, SidecarChannel] = {}
        self._ids = itertools.count(1)
        # (sidecar, channel, registration, metadata, decision, time) to audit soon.
        self._unaudited: list[
            tuple[str, str, Registration, SessionMetadata, Decision, datetime]
        ] = []
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
        channel = SidecarChannel(channel_id, sidecar, wants_view, self._encoder, self._snapshot)
        self.channels[channel_id] = channel
        floor = self._runtime.view.settings.locking_floor
        channel.push(self._encoder.welcome(self.server_id, channel_id, floor))
        if wants_view:
            channel.push_view(self._snapshot())
            channel.push_view(self._freshness())
        self._runtime.metrics.sidecar_channels.set(len(self.channels))
        _log.info("sidecar channel opened", channel=channel_id, sidecar=sidecar, view=wants_view)
        return channel

    def close_channel(self, channel: SidecarChannel) -> None:
        """Fate sharing: the channel ended, so every session on it is unregistered."""
        if self.channels.pop(channel.channel_id, None) is None:
            return
        if not channel.ended:
            channel.end(UnavailableError("the sidecar went away"), EndReason.GONE)
        reason = channel.end_reason or EndReason.GONE
        records = self._runtime.view.close_owner(channel.channel_id)
        self._sessions_changed()
        metrics = self._runtime.metrics
        metrics.sidecar_channels.set(len(self.channels))
        metrics.sidecar_channels_ended_total.labels(reason=reason.value).inc()
        fields = {
            "channel": channel.channel_id,
            "sidecar": channel.sidecar,
            "sessions_unregistered": len(records),
            "reason": reason.value,
        }
        if channel.failure is None or reason is EndReason.SHUTDOWN:
            _log.info("sidecar channel closed", **fields)
        else:
            _log.warning("sidecar channel ended", detail=str(channel.failure), **fields)

    def close_all(self, reason: str) -> None:
        """End every channel (the agent is stopping); sidecars see UNAVAILABLE."""
        for channel in list(self.channels.values()):
            channel.end(UnavailableError(reason), EndReason.SHUTDOWN)

    # -- sessions ---------------------------------------------------------------------

    def register(
        self, channel: SidecarChannel, request_id: int, registrations: Sequence[Registration]
    ) -> None:
        """Check and subscribe every session of the batch at one revision; answer at once.

        Counting and auditing come after the answer is queued (audit lines are built
        later, in `flush_audit`): they must not delay the decisions of the batch.
        """
        runtime = self._runtime
        view = runtime.view
        now, wall = runtime.clock.monotonic(), runtime.clock.now()
        results = [self._register_one(channel, item, now, wall) for item in registrations]
        channel.push(self._encoder.registered(request_id, view.state.revision, results))
        tally = {"allowed": 0, "denied": 0, "invalid": 0}
        for result in results:
            decision = result.decision
            if decision is None:
                tally["invalid"] += 1
                continue
            runtime.count_decision(decision)
            tally["allowed" if decision.allowed else "denied"] += 1
        for result_kind, count in tally.items():
            if count:
                self._registrations[result_kind].inc(count)
        self._sessions_changed()
        self._audit_soon()

    def _register_one(
        self, channel: SidecarChannel, registration: Registration, now: float, wall: datetime
    ) -> RegistrationResult:
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
            decision = self._runtime.view.open_session(
                session_id,
                registration.identity,
                now,
                wall,
                owner=channel.channel_id,
                metadata=metadata,
            )
        except LockdError as error:
            return RegistrationResult(session_id, None, str(error))
        self._unaudited.append(
            (channel.sidecar, channel.channel_id, registration, metadata, decision, wall)
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
        await asyncio.sleep(AUDIT_DELAY)
        self.flush_audit()

    def flush_audit(self) -> None:
        pending, self._unaudited = self._unaudited, []
        runtime = self._runtime
        cluster = runtime.owner.cluster
        for sidecar, channel_id, registration, metadata, decision, wall in pending:
            served = registration.identity.on_server(self.server_id)
            record = SessionRecord(channel_id, registration.session_id, served, metadata)
            if decision.allowed:
                event = audit.session_start(record, sidecar, cluster, wall)
            else:
                event = audit.session_rejected(
                    record,
                    sidecar,
                    decision.reason,
                    decision.mode,
                    decision.lock_name,
                    cluster,
                    wall,
                )
            runtime.audit.emit(event)

    # -- what the runtime tells the hub -------------------------------------------------

    def sessions_terminated(self, terminations: Sequence[Termination]) -> None:
        """One message per (channel, lock event) carrying every hit session id (one per
        MAX_TERMINATED_IDS of them, so that it stays far below gRPC's 4 MiB default)."""
        groups: dict[tuple[str, str, str, TerminationCause], list[str]] = {}
        for termination in terminations:
            key = (termination.owner, termination.lock_name, termination.reason, termination.cause)
            groups.setdefault(key, []).append(termination.session_id)
        revision = self._runtime.view.state.revision
        for (owner, lock_name, reason, cause), session_ids in groups.items():
            channel = self.channels.get(owner)
            if channel is None:
                continue
            for start in range(0, len(session_ids), MAX_TERMINATED_IDS):
                channel.push(
                    self._encoder.terminated(
                        session_ids[start : start + MAX_TERMINATED_IDS],
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

    def _snapshot(self) -> ViewSnapshot:
        state = self._runtime.view.state
        return ViewSnapshot(state.epoch, state.revision, state.resources())

    def snapshot_applied(self) -> None:
        channels = self._view_channels()
        if channels:
            snapshot = self._snapshot()  # immutable: one for every channel
            for channel in channels:
                channel.push_view(snapshot)

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

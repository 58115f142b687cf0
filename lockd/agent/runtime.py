"""The agent runtime: carries out what the local view decides.

The watch client feeds replication messages in; sidecars register sessions on their
channels (`lockd.agent.session_hub`, a listener of this runtime) and ask for decisions.
Every call into `LocalView` is synchronous, and this class performs its effects: hand
terminated sessions to the listeners (which signal the sidecars), count metrics, write
audit lines, and save every change (lockd.agent.view_saver).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Protocol

import structlog
from prometheus_client import Counter

from lockd.agent.persist import ViewOwner
from lockd.agent.view_saver import ViewSaver
from lockd.domain.events import Event, StreamedResource
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock
from lockd.domain.lock_table import PackedLock, PackedRun
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock
from lockd.domain.view import Decision, LocalView, SyncState, Termination
from lockd.obs import audit
from lockd.obs.audit import AuditSink
from lockd.obs.metrics import AgentMetrics

_log = structlog.get_logger("lockd.agent")

TICK_INTERVAL = 0.2
RECORD_DELAY = 0.05


class RuntimeListener(Protocol):
    """Told, synchronously and in order, what the view did (the sidecar channels)."""

    def sessions_terminated(self, terminations: Sequence[Termination]) -> None: ...

    def snapshot_applied(self) -> None: ...

    def events_applied(self, epoch: str, events: Sequence[Event]) -> None: ...


class AgentRuntime:
    def __init__(
        self,
        view: LocalView,
        clock: Clock,
        audit_sink: AuditSink,
        metrics: AgentMetrics,
        owner: ViewOwner,
        saver: ViewSaver | None = None,
    ) -> None:
        self.view = view
        self.clock = clock
        self.audit = audit_sink
        self.metrics = metrics
        self.owner = owner
        # Saves each change before it is acknowledged (None: nothing is persisted).
        self.saver = saver if saver is not None else ViewSaver(view)
        self._listeners: list[RuntimeListener] = [self.saver]
        # Terminations signalled but not yet counted, audited and logged.
        self._unrecorded: list[Termination] = []
        self._recorder: asyncio.Task[None] | None = None
        # The access-check counter of each (allowed, mode): resolved once, not per check.
        self._checks: dict[tuple[bool, LockingMode], Counter] = {}
        self._state = view.sync_state(clock.monotonic())
        self.synced_once = asyncio.Event()  # set as the state becomes SYNCED
        if self._state is SyncState.SYNCED:
            self.synced_once.set()
        # Read at each scrape, not set per batch (the batch path is the agent's hot one).
        metrics.view_revision.set_function(lambda: view.state.revision)

    @property
    def server_id(self) -> str:
        return self.view.settings.server_id

    # -- sessions ----------------------------------------------------------------------

    def listen(self, listener: RuntimeListener) -> None:
        self._listeners.append(listener)

    def check_access(self, identity: Identity) -> Decision:
        decision = self.view.decide(identity, self.clock.monotonic(), self.clock.now())
        self.count_decision(decision)
        if not decision.allowed:
            served = identity.on_server(self.server_id)
            self.audit.emit(
                audit.access_denied(
                    served,
                    decision.reason,
                    decision.mode,
                    self.owner.cluster,
                    self.clock.now(),
                    lock=decision.lock_name,
                )
            )
        return decision

    def count_decision(self, decision: Decision) -> None:
        """Count an access check (a CheckAccess or a session registration)."""
        counter = self._checks.get((decision.allowed, decision.mode))
        if counter is None:
            label = "allowed" if decision.allowed else "denied"
            counter = self.metrics.access_checks_total.labels(
                decision=label, mode=decision.mode.value
            )
            self._checks[(decision.allowed, decision.mode)] = counter
        counter.inc()

    def _carry_out(self, terminations: Sequence[Termination]) -> None:
        """Signal every terminated session now; count, audit and log them just after.

        The signals go first: a lock hitting a thousand sessions must reach their
        sidecars without waiting for a thousand audit and log lines. The bookkeeping
        runs once the handlers woken by the signals have sent their messages.
        """
        if not terminations:
            return
        for listener in self._listeners:
            listener.sessions_terminated(terminations)
        self.metrics.sessions.set(self.view.session_count)
        self._unrecorded.extend(terminations)
        if self._recorder is not None and not self._recorder.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._record()
            return
        self._recorder = loop.create_task(self._record_soon())

    async def _record_soon(self) -> None:
        # The sidecar channels write their termination messages first: a thousand audit
        # lines (~50 ms) written right away would hold those writes back (lockd bench
        # terminate). Terminations meanwhile share the same recording.
        await asyncio.sleep(RECORD_DELAY)
        self._record()

    def _record(self) -> None:
        terminations, self._unrecorded = self._unrecorded, []
        if not terminations:
            return
        for reason, count in Tally(t.cause.value for t in terminations).items():
            self.metrics.terminations_total.labels(reason=reason).inc(count)
        now = self.clock.now()
        for termination in terminations:
            self.audit.emit(
                audit.session_terminated(
                    termination.session_id,
                    termination.identity.user,
                    self.server_id,
                    termination.reason,
                    self.owner.cluster,
                    now,
                    reason_kind=termination.cause.value,
                    lock=termination.lock_name,
                    login=termination.identity.login,
                    metadata=termination.metadata,
                    channel=termination.owner,
                )
            )
        # One line per lock (or cause): each session is in the audit trail.
        groups: dict[tuple[str, str], list[Termination]] = {}
        for termination in terminations:
            key = (termination.lock_name, termination.cause.value)
            groups.setdefault(key, []).append(termination)
        for (lock_name, cause), group in groups.items():
            _log.warning(
                "sessions terminated",
                count=len(group),
                lock=lock_name,
                reason_kind=cause,
                reason=group[0].reason,
                users=sorted({t.identity.user for t in group})[:10],
                session_ids=[t.session_id for t in group[:10]],
            )

    # -- replication ---------------------------------------------------------------------

    def on_snapshot_begin(self, epoch: str, revision: int) -> None:
        self.view.begin_snapshot(epoch, revision)

    def on_snapshot_chunk(
        self, resources: Sequence[StreamedResource], run: PackedRun | None = None
    ) -> None:
        """Apply one chunk as it arrives (no copy of the whole snapshot is buffered)."""
        self._carry_out(self.view.add_to_snapshot(resources, self.clock.now(), run))

    def on_snapshot_end(self, epoch: str, revision: int, count: int) -> None:
        self.view.end_snapshot(epoch, revision, count, self.clock.monotonic())
        for listener in self._listeners:
            listener.snapshot_applied()
        self._refresh_state()

    def on_events(self, epoch: str, first: int, last: int, events: Sequence[Event]) -> None:
        now, monotonic = self.clock.now(), self.clock.monotonic()
        ended = self.view.apply_events(epoch, first, last, events, monotonic, now)
        self._observe_propagation(events, now.timestamp())
        if ended:
            self._carry_out(ended)
        for listener in self._listeners:
            listener.events_applied(epoch, events)
        self._refresh_state(monotonic)

    def _observe_propagation(self, events: Sequence[Event], now: float) -> None:
        """Each put lock's delay from its created_at on the auth server to `now`."""
        observe = self.metrics.lock_propagation_seconds.observe
        for event in events:
            resource = event.resource
            if isinstance(resource, PackedLock):
                if resource.created_us is not None:
                    delay = now - resource.created_us / 1e6
                    observe(delay if delay > 0.0 else 0.0)  # a clock behind the server's
            elif isinstance(resource, Lock) and resource.created_at is not None:
                observe(max(0.0, now - resource.created_at.timestamp()))

    def on_heartbeat(self, epoch: str, revision: int, healthy: bool, interval: float) -> None:
        self.view.heartbeat(epoch, revision, healthy, interval, self.clock.monotonic())
        self._refresh_state()

    def on_connection(self, connected: bool) -> None:
        self.view.set_connected(connected)
        self._refresh_state()

    # -- timers ----------------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock.monotonic()
        self._carry_out(self.view.tick(now, self.clock.now()))
        # The age is a gauge scraped every few seconds: set here, not per message.
        age = self.view.age(now)
        self.metrics.view_age_seconds.set(age if age is not None else 0.0)
        self._refresh_state(now)

    def _refresh_state(self, now: float | None = None) -> None:
        state = self.view.sync_state(self.clock.monotonic() if now is None else now)
        if state is not self._state:
            _log.info("view state changed", old=self._state.value, new=state.value)
            self._state = state
            self.metrics.set_state(state.value)
            if state is SyncState.SYNCED:
                self.synced_once.set()

    def sync_state(self) -> SyncState:
        return self.view.sync_state(self.clock.monotonic())

    async def tick_forever(self, interval: float = TICK_INTERVAL) -> None:
        while True:
            self.tick()
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Record what is pending and save the view one last time."""
        if self._recorder is not None:
            self._recorder.cancel()
        self._record()
        with contextlib.suppress(asyncio.CancelledError):
            await self.saver.close()

"""The sidecar's end of SessionChannel: every session of one `AgentClient` on one stream.

`SessionChannel` keeps one bidi stream to the agent alive. Registrations and
unregistrations made in the same loop iteration leave as one message (up to the
agent's `max_batch`), so a burst of `open_session` calls costs a few messages, not one
each. Terminations arrive as one message per lock event; the read loop resolves each
hit `Session` at once.

Fate sharing, the sidecar's side (docs/sidecar-api.md): when the stream breaks (the
agent died, restarted or shut down), strict sessions end with the lock-out message
(cause `agent_unavailable`); best_effort sessions stay, and the channel reconnects with
backoff and registers them again, which is a fresh check: a lock that arrived meanwhile
ends them with its message. With `want_view` the agent's view is copied here
(`lockd.domain.view_copy`) for in-process decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog

from lockd.client.session_handle import Registering, Session, SessionRequest, SessionTermination
from lockd.domain.backoff import Backoff
from lockd.domain.errors import LockdError, PreconditionError, UnavailableError
from lockd.domain.events import StreamedResource
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.domain.modes import LockingMode
from lockd.domain.sessions import SessionMetadata
from lockd.domain.view import Decision, ViewMismatch
from lockd.domain.view_copy import ViewCopy
from lockd.v1 import agent_service_pb2 as pb
from lockd.wire import convert
from lockd.wire.session_convert import CAUSE_FROM_PB, decision_from_pb, metadata_to_pb
from lockd.wire.status_table import error_for

_log = structlog.get_logger("lockd.client.sidecar")

METHOD = "/lockd.v1.AgentService/SessionChannel"
AGENT_UNAVAILABLE = "agent_unavailable"
# Freshness reports count this many intervals: a copy silent for longer is stale.
SILENT_INTERVALS = 3
DEFAULT_BACKOFF = Backoff(base=0.1, cap=5.0)
SYNC_STATE_FROM_PB = {value: key for key, value in convert.SYNC_STATE_TO_PB.items()}


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    sidecar: str = ""
    want_view: bool = False
    backoff: Backoff = DEFAULT_BACKOFF
    # How long a registration waits for the channel to (re)connect before giving up.
    connect_timeout: float = 5.0


class SessionChannel:
    """One SessionChannel stream, kept alive; see the module docstring."""

    def __init__(self, channel: grpc.aio.Channel, settings: ChannelSettings) -> None:
        self._method: Any = channel.stream_stream(
            METHOD,
            request_serializer=pb.SidecarMessage.SerializeToString,
            response_deserializer=pb.AgentMessage.FromString,
        )
        self.settings = settings
        self.server_id = ""
        self.max_batch = 1000
        self.copy: ViewCopy | None = None
        self._sessions: dict[str, Session] = {}  # registered and allowed
        self._registering: dict[str, Session] = {}  # sent, no answer yet
        self._to_register: list[Session] = []
        self._to_unregister: list[str] = []
        self._flush_scheduled = False
        self._call: Any = None
        self._connected = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._request_ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.last_error = "not connected yet"

    # -- public ---------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run_forever())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for session in [*self._sessions.values(), *self._registering.values()]:
            session._forget()
            if session.registering is not None:
                session.registering.done.cancel()
        self._sessions.clear()
        self._registering.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def live_sessions(self) -> int:
        return len(self._sessions)

    async def register(self, requests: Sequence[SessionRequest]) -> list[Session]:
        """Register every request (one message per `max_batch`); each comes back decided."""
        self.start()
        await self._wait_connected()
        ids = [request.session_id or _random_id() for request in requests]
        taken = [sid for sid in ids if sid in self._sessions or sid in self._registering]
        if taken or len(set(ids)) != len(ids):
            duplicate = taken[0] if taken else next(sid for sid in ids if ids.count(sid) > 1)
            raise PreconditionError(f'session "{duplicate}" is already registered')
        now = datetime.now(UTC)  # one stamp per batch: equal metadata encodes once
        stamped: dict[SessionMetadata, SessionMetadata] = {}
        registering = Registering(len(requests))
        sessions = []
        for session_id, request in zip(ids, requests, strict=True):
            metadata = request.metadata
            if metadata.started_at is None:
                metadata = stamped.get(request.metadata) or _stamped(metadata, now)
                stamped[request.metadata] = metadata
            session = Session(self, session_id, request.identity, metadata, registering)
            self._registering[session_id] = session
            sessions.append(session)
        self._to_register += sessions
        self._schedule_flush()
        await registering.done
        return sessions

    def unregister(self, sessions: Sequence[Session]) -> None:
        for session in sessions:
            session._forget()
            if self._sessions.pop(session.session_id, None) is not None:
                self._to_unregister.append(session.session_id)
        self._schedule_flush()

    # -- writing --------------------------------------------------------------------

    async def _wait_connected(self) -> None:
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                await self._connected.wait()
        except TimeoutError:
            raise UnavailableError(f"the agent is unavailable: {self.last_error}") from None

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._connected.is_set():
            self._flush_scheduled = True
            asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Send what accumulated in this loop iteration, in batches."""
        self._flush_scheduled = False
        call = self._call
        if call is None:
            return  # not connected: the reconnect sends what is still pending
        messages: list[pb.SidecarMessage] = []
        while self._to_unregister:
            ids, self._to_unregister = (
                self._to_unregister[: self.max_batch],
                self._to_unregister[self.max_batch :],
            )
            messages.append(pb.SidecarMessage(unregister=pb.UnregisterSessions(session_ids=ids)))
        while self._to_register:
            batch, self._to_register = (
                self._to_register[: self.max_batch],
                self._to_register[self.max_batch :],
            )
            messages.append(self._register_message(batch))
        async with self._write_lock:
            for message in messages:
                with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    await call.write(message)  # a failure shows in the read loop

    def _register_message(self, batch: Sequence[Session]) -> pb.SidecarMessage:
        # Sessions of one batch often share identity or metadata objects: each distinct
        # one is encoded once, as a SessionRegistration holding just that field, and
        # merged into each registration as bytes (much cheaper than nested messages).
        identities: dict[int, bytes] = {}
        metadatas: dict[int, bytes] = {}
        message = pb.RegisterSessions(request_id=next(self._request_ids))
        add = message.sessions.add
        for session in batch:
            identity = identities.get(id(session.identity))
            if identity is None:
                identity = identities[id(session.identity)] = pb.SessionRegistration(
                    identity=convert.identity_to_pb(session.identity)
                ).SerializeToString()
            metadata = metadatas.get(id(session.metadata))
            if metadata is None:
                metadata = metadatas[id(session.metadata)] = pb.SessionRegistration(
                    metadata=metadata_to_pb(session.metadata)
                ).SerializeToString()
            add(session_id=session.session_id).MergeFromString(identity + metadata)
        return pb.SidecarMessage(register=message)

    # -- the stream -----------------------------------------------------------------

    async def _run_forever(self) -> None:
        attempt = 0
        while True:
            try:
                await self._serve_once()
                self.last_error = "the agent closed the channel"
            except grpc.aio.AioRpcError as error:
                self.last_error = str(error_for(error.code(), error.details() or ""))
            except (LockdError, ViewMismatch) as error:
                self.last_error = str(error)
            finally:
                was_connected = self._connected.is_set()
                self._lost()
            if was_connected:
                attempt = 0
                _log.warning("agent channel lost; reconnecting", reason=self.last_error)
            delay = self.settings.backoff.delay(attempt, random.random)
            attempt += 1
            await asyncio.sleep(delay)

    async def _serve_once(self) -> None:
        call = self._method()
        hello = pb.ChannelHello(sidecar=self.settings.sidecar, want_view=self.settings.want_view)
        await call.write(pb.SidecarMessage(hello=hello))
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("message") != "welcome":
            raise UnavailableError("the agent did not welcome the channel")
        welcome = first.welcome
        self.server_id = welcome.server_id
        self.max_batch = welcome.max_batch or self.max_batch
        if self.settings.want_view:
            interval = convert.duration_from_pb(welcome.freshness_interval).total_seconds()
            self.copy = ViewCopy(
                welcome.server_id,
                silence_bound=SILENT_INTERVALS * max(interval, 0.1),
                locking_floor=convert.MODE_FROM_PB.get(welcome.locking_floor)
                or LockingMode.BEST_EFFORT,
            )
        self._call = call
        # Kept (best_effort) sessions register again first: a fresh check each.
        kept = list(self._sessions.values())
        self._sessions.clear()
        for session in kept:
            self._registering[session.session_id] = session
        self._to_register[:0] = kept
        self._connected.set()
        self._schedule_flush()
        await self._read(call)

    async def _read(self, call: Any) -> None:
        snapshot: list[StreamedResource] | None = None
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            kind = message.WhichOneof("message")
            if kind == "registered":
                self._on_registered(message.registered)
            elif kind == "terminated":
                self._on_terminated(message.terminated)
            elif kind == "snapshot_begin":
                snapshot = []
            elif kind == "snapshot_chunk" and snapshot is not None:
                resources, run = convert.snapshot_chunk_from_pb(message.snapshot_chunk)
                snapshot += resources
                snapshot += run.locks()
            elif kind == "snapshot_end" and snapshot is not None and self.copy is not None:
                end = message.snapshot_end
                now, wall = clock_now()
                self.copy.apply_snapshot(end.epoch, end.revision, snapshot, now, wall)
                self.copy.apply_loaded()
                snapshot = None
            elif kind == "events" and self.copy is not None:
                batch = message.events
                events = convert.events_from_pb(batch.events)
                now, wall = clock_now()
                self.copy.apply_events(
                    batch.epoch, batch.from_revision, batch.to_revision, events, now, wall
                )
            elif kind == "freshness" and self.copy is not None:
                report = message.freshness
                state = SYNC_STATE_FROM_PB.get(report.state)
                if state is not None:
                    reliable_for = convert.duration_from_pb(report.reliable_for).total_seconds()
                    self.copy.report(state, reliable_for, clock_now()[0])

    def _on_registered(self, answer: pb.SessionsRegistered) -> None:
        decisions: dict[bytes, Decision] = {}  # equal decisions are read once
        for result in answer.results:
            session = self._registering.pop(result.session_id, None)
            if session is None:
                continue
            if not result.HasField("decision"):
                self._settle(session, Decision(False, session.decision.mode, result.error))
                continue
            raw = result.decision.SerializeToString()
            decision = decisions.get(raw)
            if decision is None:
                decision = decisions[raw] = decision_from_pb(result.decision)
            if decision.allowed:
                self._sessions[session.session_id] = session
            self._settle(session, decision)

    def _settle(self, session: Session, decision: Decision) -> None:
        registering = session.registering
        if registering is not None:  # its first decision: the caller reads it
            session.decision, session.registering = decision, None
            registering.decided()
            return
        # A session registered again after a reconnect: refused now means ended.
        if decision.allowed:
            session.decision = decision
        else:
            cause = "lock" if decision.lock_name else "strict_stale"
            session._end(SessionTermination(decision.reason, decision.lock_name, cause))

    def _on_terminated(self, message: pb.SessionsTerminated) -> None:
        cause = CAUSE_FROM_PB.get(message.cause)
        termination = SessionTermination(
            message.reason, message.lock_name, cause.value if cause is not None else "lock"
        )
        sessions = self._sessions
        for session_id in message.session_ids:
            session = sessions.pop(session_id, None)
            if session is not None:
                session._end(termination)

    def _lost(self) -> None:
        """The stream is gone: what each session's mode requires (module docstring)."""
        self._connected.clear()
        if self._call is not None:
            self._call.cancel()
        self._call = None
        self._to_unregister.clear()  # the agent forgot them with the channel
        if self.copy is not None:
            self.copy.lose_agent()
        if self._closing:
            return
        lost = SessionTermination(STRICT_LOCKOUT_MESSAGE, "", AGENT_UNAVAILABLE)
        for session_id, session in list(self._registering.items()):
            if session.registering is not None:  # a first registration: its caller decides
                del self._registering[session_id]
                session.registering.fail(
                    UnavailableError(f"the agent is unavailable: {self.last_error}")
                )
        self._to_register = [s for s in self._to_register if s.session_id in self._registering]
        for session in [*self._sessions.values(), *self._registering.values()]:
            if session.strict:
                self._sessions.pop(session.session_id, None)
                self._registering.pop(session.session_id, None)
                session._end(lost)
        # best_effort sessions stay in _sessions / _registering and register again.
        self._sessions.update(self._registering)
        self._registering.clear()
        self._to_register.clear()


def _stamped(metadata: SessionMetadata, now: datetime) -> SessionMetadata:
    return SessionMetadata(
        metadata.protocol, metadata.remote_address, metadata.target_resource, now
    )


def _random_id() -> str:
    return f"{random.getrandbits(128):032x}"


def clock_now() -> tuple[float, datetime]:
    """This process's monotonic time and the wall clock, as the view copy takes them."""
    return time.monotonic(), datetime.now(UTC)

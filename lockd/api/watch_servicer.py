"""WatchLocks over gRPC: the protobuf encoder for the fan-out and the stream handler.

Responses leave as bytes serialised once (the handler's response serializer is the
identity), so a batch in the shared ring goes to every stream without re-encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import grpc
import structlog

from lockd.api.handler import CallerResolver, Context
from lockd.auth.agents import AgentRegistry
from lockd.auth.auth_service import AuthService
from lockd.auth.hub import ReplicationHub, ResetReason
from lockd.auth.watch_stream import Hello, SnapshotGate, WatchSettings, WatchStream
from lockd.domain import rbac
from lockd.domain.errors import AccessDeniedError, ValidationError
from lockd.domain.events import Event
from lockd.domain.lock import TargetPair
from lockd.domain.ports import Clock, Store
from lockd.domain.rbac import Caller, CallerKind
from lockd.domain.resources import Kind, ReplicatedResource
from lockd.obs.metrics import AuthMetrics
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import watch_service_pb2 as pb
from lockd.wire import convert
from lockd.wire.status_table import status_for

_log = structlog.get_logger("lockd.api.watch_servicer")

RESET_REASON_TO_PB = {
    ResetReason.TOO_OLD: pb.RESET_REASON_TOO_OLD,
    ResetReason.EPOCH_CHANGED: pb.RESET_REASON_EPOCH_CHANGED,
    ResetReason.SLOW_CONSUMER: pb.RESET_REASON_SLOW_CONSUMER,
    ResetReason.AHEAD_OF_SERVER: pb.RESET_REASON_AHEAD_OF_SERVER,
    ResetReason.SHUTDOWN: pb.RESET_REASON_SHUTDOWN,
    ResetReason.OVERLOADED: pb.RESET_REASON_OVERLOADED,
    ResetReason.LOCKED: pb.RESET_REASON_LOCKED,
}
AGENT_STATE_FROM_PB = {
    cluster_pb.AGENT_SYNC_STATE_SYNCING: "syncing",
    cluster_pb.AGENT_SYNC_STATE_SYNCED: "synced",
    cluster_pb.AGENT_SYNC_STATE_DEGRADED: "degraded",
    cluster_pb.AGENT_SYNC_STATE_STALE: "stale",
}
SERVICE_NAME = "lockd.v1.WatchService"
# How long the stream of a locked agent stays open after its Reset for the agent's last
# ack (it saves its view first).
LOCKED_ACK_WAIT = 5.0


class ProtoWatchEncoder:
    """The WatchEncoder port, in lockd.v1 protobuf."""

    def events(
        self,
        epoch: str,
        events: Sequence[Event],
        ack_requested: bool = False,
        packed: bool = False,
    ) -> bytes:
        batch = pb.EventBatch(
            epoch=epoch,
            from_revision=events[0].revision,
            to_revision=events[-1].revision,
            events=[convert.event_to_pb(event, packed) for event in events],
            ack_requested=ack_requested,
        )
        return pb.WatchLocksResponse(events=batch).SerializeToString()

    def snapshot_begin(self, epoch: str, revision: int, count: int) -> bytes:
        begin = pb.SnapshotBegin(epoch=epoch, revision=revision, count=count)
        return pb.WatchLocksResponse(snapshot_begin=begin).SerializeToString()

    def snapshot_chunk(
        self, resources: Sequence[ReplicatedResource], packed: bool = False
    ) -> bytes:
        chunk = convert.snapshot_chunk_to_pb(resources, packed)
        return pb.WatchLocksResponse(snapshot_chunk=chunk).SerializeToString()

    def snapshot_end(self, epoch: str, revision: int, count: int) -> bytes:
        end = pb.SnapshotEnd(epoch=epoch, revision=revision, count=count)
        return pb.WatchLocksResponse(snapshot_end=end).SerializeToString()

    def heartbeat(
        self, epoch: str, revision: int, server_time: datetime, healthy: bool, interval: timedelta
    ) -> bytes:
        beat = pb.Heartbeat(
            epoch=epoch,
            revision=revision,
            server_time=convert.timestamp_to_pb(server_time),
            store_healthy=healthy,
            interval=convert.duration_to_pb(interval),
        )
        return pb.WatchLocksResponse(heartbeat=beat).SerializeToString()

    def ack_request(self, epoch: str, revision: int) -> bytes:
        request = pb.AckRequest(epoch=epoch, revision=revision)
        return pb.WatchLocksResponse(ack_request=request).SerializeToString()

    def reset(self, reason: ResetReason, retry_after: timedelta, detail: str) -> bytes:
        message = pb.Reset(
            reason=RESET_REASON_TO_PB[reason],
            retry_after=convert.duration_to_pb(retry_after),
            detail=detail,
        )
        return pb.WatchLocksResponse(reset=message).SerializeToString()


class WriteWatchdog:
    """Cancels the task of a stream whose frame has waited longer than `limit` seconds
    to be written (a reader that stopped reading: its flow-control window is full).

    One loop for every stream, looking every `limit / 4` (at most every second): a
    stream notes when a write starts and ends — two dict operations — instead of arming
    a timer for every frame it sends.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.writing: dict[asyncio.Task[Any], float] = {}  # task -> loop time of the write
        self.stalled: set[asyncio.Task[Any]] = set()
        self._streams = 0
        self._task: asyncio.Task[None] | None = None

    def enter(self) -> None:
        self._streams += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch())

    def leave(self, task: asyncio.Task[Any]) -> None:
        self._streams -= 1
        self.writing.pop(task, None)
        self.stalled.discard(task)
        if self._streams == 0 and self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.limit / 4))
            deadline = loop.time() - self.limit
            for task, since in list(self.writing.items()):
                if since < deadline and task not in self.stalled:
                    self.stalled.add(task)
                    task.cancel()


class WatchHandler:
    """Serves WatchLocks for every connected agent."""

    def __init__(
        self,
        hub: ReplicationHub,
        store: Store,
        agents: AgentRegistry,
        clock: Clock,
        settings: WatchSettings,
        metrics: AuthMetrics,
        service: AuthService,
    ) -> None:
        self._metrics = metrics
        self._service = service
        self._hub = hub
        self._store = store
        self._agents = agents
        self._clock = clock
        self._settings = settings
        self._gate = SnapshotGate(settings.snapshot_bytes_in_flight)
        self._watchdog = WriteWatchdog(settings.slow_consumer_after.total_seconds())
        agents.on_await.append(self._awaited)

    def _awaited(self) -> None:
        """An awaited revision: the streams that have it send AckRequests. One not
        published yet (CreateLock's await_ack) wakes nobody: its batch will carry the
        request, and waking every stream for nothing delays that batch."""
        if self._agents.awaited <= self._hub.revision:
            self._hub.wake()

    def rpc_handler(self, caller_of: CallerResolver) -> grpc.GenericRpcHandler:
        """The WatchLocks handler for a server whose callers `caller_of` identifies."""
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "WatchLocks": grpc.stream_stream_rpc_method_handler(
                    functools.partial(self.watch_locks, caller_of),
                    request_deserializer=pb.WatchLocksRequest.FromString,
                    response_serializer=_identity,
                )
            },
        )

    async def watch_locks(
        self,
        caller_of: CallerResolver,
        requests: AsyncIterator[pb.WatchLocksRequest],
        context: Context,
    ) -> None:
        """Admit the caller, register the agent, send frames until Reset, then clean up."""
        admitted = await self._hello(caller_of, requests, context)
        if admitted is None:
            return
        caller, hello = admitted
        token = self._agents.connect(hello.agent_id, context.peer(), self._clock.now())
        targets = caller.identity().query_targets_on(hello.agent_id)
        reader = asyncio.create_task(self._read_acks(requests, hello.agent_id, token))
        stream = WatchStream(
            self._hub,
            self._store,
            self._clock,
            self._settings,
            self._gate,
            hello,
            on_batch_sent=self._count_batch,
            # The agent the stream serves is the Hello's agent_id (for an agent caller the
            # same as its certificate's server_id): a lock on that server_id cuts it off.
            locked=functools.partial(self._lock_out, targets, hello.agent_id, token),
            awaited=lambda: self._agents.awaited,
            lock_targets=targets,
        )
        self._metrics.watch_streams.inc()
        try:
            stalled = await self._send_frames(stream, context, hello.agent_id)
            if stream.reset_reason is ResetReason.LOCKED:
                await self._last_ack(reader)
        finally:
            self._metrics.watch_streams.dec()
            if stream.snapshotted:
                self._metrics.snapshots_sent_total.inc()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._agents.disconnect(hello.agent_id, token)
        self._record_reset(stream, hello.agent_id)
        if stalled:
            await self._abort_stalled(context)

    async def _hello(
        self,
        caller_of: CallerResolver,
        requests: AsyncIterator[pb.WatchLocksRequest],
        context: Context,
    ) -> tuple[Caller, Hello] | None:
        """The caller and its Hello, or None after aborting the call with the reason."""
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("message") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be Hello")
            return None
        said = first.hello
        hello = Hello(said.agent_id, said.epoch, said.applied_revision, said.packed_locks)
        try:
            caller = caller_of(context)
            self._admit(caller, hello)
        except Exception as error:
            code, message = status_for(error)
            await context.abort(code, message)
            return None
        return caller, hello

    async def _send_frames(self, stream: WatchStream, context: Context, agent_id: str) -> bool:
        """Write every frame of `stream`; True when the write watchdog dropped a stall.

        The watchdog cancels a task whose write waits too long; that one cancellation is
        taken back (`uncancel`) so the handler can still end the call with a status.
        """
        task = asyncio.current_task()
        assert task is not None
        watchdog = self._watchdog
        watchdog.enter()
        writing, loop = watchdog.writing, asyncio.get_running_loop()
        try:
            async for frame in stream.frames():
                writing[task] = loop.time()
                await context.write(frame)
                del writing[task]
        except asyncio.CancelledError:
            if task not in watchdog.stalled:
                raise
            task.uncancel()
            _log.warning("watch stream stalled; dropping it", agent_id=agent_id)
            return True
        finally:
            watchdog.leave(task)
        return False

    async def _last_ack(self, reader: asyncio.Task[None]) -> None:
        """A locked agent acks what it applied (the lock included) after the Reset, then
        closes its side: wait a moment for that, so `lock --wait` can count it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOCKED_ACK_WAIT):
                await asyncio.shield(reader)

    def _record_reset(self, stream: WatchStream, agent_id: str) -> None:
        if stream.reset_reason is not None:
            self._metrics.resets_total.labels(reason=stream.reset_reason.value).inc()
            _log.info("watch stream reset", agent_id=agent_id, reason=stream.reset_reason)

    async def _abort_stalled(self, context: Context) -> None:
        """No Reset can get through a stalled stream: end it with a status instead of a
        clean close, so the agent knows it was dropped (and resumes on reconnect)."""
        self._metrics.resets_total.labels(reason=ResetReason.SLOW_CONSUMER.value).inc()
        write_timeout = self._settings.slow_consumer_after.total_seconds()
        await context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"slow consumer: a write to this stream waited more than {write_timeout:g}s; "
            "reconnect and resume",
        )

    def _admit(self, caller: Caller, hello: Hello) -> None:
        """Agents watch as themselves only; users need list+read on locks; never locked."""
        if not hello.agent_id:
            raise ValidationError("Hello needs an agent_id")
        if caller.kind is CallerKind.AGENT:
            if hello.agent_id != caller.server_id:
                raise AccessDeniedError(
                    f'agent "{caller.server_id}" may only watch as itself, not as '
                    f'"{hello.agent_id}"'
                )
            self._service.check_not_locked(caller)
        else:
            self._service.authorize(caller, Kind.LOCK, rbac.LIST)

    def _lock_out(self, targets: tuple[TargetPair, ...], agent_id: str, token: int) -> str | None:
        """The message of a lock on the caller (its query targets), if one is in force.

        The stream then ends with Reset(LOCKED): the agent is shown as locked from this
        moment, before the Reset goes out, so its last ack (the lock applied) is never
        taken for a plain confirmation by a connected agent."""
        hit = self._service.lock_index.first_hit(targets, self._clock.now())
        if hit is None:
            return None
        self._agents.lock_out(agent_id, token)
        return hit.in_force_message()

    def _count_batch(self, events: int) -> None:
        self._metrics.event_batches_sent_total.inc()
        self._metrics.events_sent_total.inc(events)

    async def _read_acks(
        self, requests: AsyncIterator[pb.WatchLocksRequest], agent_id: str, token: int
    ) -> None:
        async for request in requests:
            if request.WhichOneof("message") != "ack":
                self._agents.heard(agent_id, token, self._clock.now())
                continue
            ack = request.ack
            self._agents.ack(
                agent_id,
                token,
                ack.epoch,
                ack.applied_revision,
                AGENT_STATE_FROM_PB.get(ack.state, "syncing"),
                self._clock.now(),
            )


def _identity(payload: bytes) -> bytes:
    return payload

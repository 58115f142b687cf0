"""The agent's side of WatchLocks: one stream to an auth server, kept alive forever.

Tries the configured auth servers in turn, reconnecting with exponential backoff and
full jitter (honouring a Reset's retry_after, starting over after a healthy period).
Snapshot chunks, event batches and heartbeats go straight to the runtime (a snapshot is
applied chunk by chunk and completed at SnapshotEnd), whose view refuses gaps and older
state — on such a refusal the stream is dropped and resumed from the applied revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog

from lockd import __version__
from lockd.agent.runtime import AgentRuntime
from lockd.client.watch_liveness import StreamSilence
from lockd.domain.ack_cadence import AckCadence
from lockd.domain.backoff import Backoff
from lockd.domain.errors import ValidationError
from lockd.domain.view import ViewMismatch
from lockd.v1 import watch_service_pb2 as pb
from lockd.v1 import watch_service_pb2_grpc as watch_grpc
from lockd.wire import convert

_log = structlog.get_logger("lockd.agent.watch")

RESET_REASON_NAMES = {
    value: name.removeprefix("RESET_REASON_").lower() for name, value in pb.ResetReason.items()
}
# Stream endings after which another auth server is tried (docs/protocol.md): the server
# is going away, lags behind our view, or closed without a Reset (a transport failure).
# A silent stream (lockd.client.watch_liveness) counts as a transport failure.
ROTATE_ON = frozenset({"shutdown", "ahead_of_server", "closed", "silent"})
# Events applied per loop turn: a large batch (a resume, a burst of creates) is applied
# in slices so CheckAccess calls on the agent's socket are answered in between.
APPLY_SLICE = 256
# How long a locked agent waits for its view to be saved before its last ack.
LOCKED_SAVE_WAIT = 5.0
CHANNEL_OPTIONS = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


@dataclass(frozen=True, slots=True)
class WatchClientSettings:
    agent_id: str
    auth_servers: tuple[str, ...]
    backoff: Backoff = field(default_factory=Backoff)
    healthy_period: float = 30.0
    # Read at every connection, so a renewed certificate is used from then on.
    credentials: Callable[[], grpc.ChannelCredentials] | None = None
    # Added to CHANNEL_OPTIONS (e.g. `lockd bench` gives each of its many in-process
    # agents its own connection with ("grpc.use_local_subchannel_pool", 1)).
    channel_options: tuple[tuple[str, int | str], ...] = ()


class StreamEnded(Exception):
    """The server closed the stream; carries its retry_after in seconds."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class WatchClient:
    def __init__(
        self,
        runtime: AgentRuntime,
        settings: WatchClientSettings,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._draw = draw
        self._write_lock = asyncio.Lock()
        # The revision the server asked us to ack (AckRequest, or our own snapshot), and
        # the highest one acknowledged so far, on the current stream.
        self._wanted = 0
        self._acked = 0
        self._nudge = asyncio.Event()

    async def run_forever(self) -> None:
        attempt = 0
        servers = self._settings.auth_servers
        index = 0
        clock = self._runtime.clock  # the healthy period is timed on the agent's clock
        while True:
            address = servers[index % len(servers)]
            started = clock.monotonic()
            floor = 0.0
            try:
                await self._stream(address)
            except StreamEnded as ended:
                floor = ended.retry_after
                _log.info("watch stream reset", address=address, reason=ended.reason)
                if ended.reason in ROTATE_ON:
                    index += 1  # this server cannot serve us now: try the next one
            except ViewMismatch as mismatch:
                _log.warning("view mismatch; resuming", address=address, detail=str(mismatch))
                self._count_resync("gap")
            except grpc.aio.AioRpcError as error:
                _log.warning(
                    "watch stream failed",
                    address=address,
                    code=error.code().name,
                    detail=error.details(),
                )
                index += 1  # try the next auth server
            except Exception as error:  # never let one bad stream stop the watcher
                _log.error("watch stream broke", address=address, error=repr(error))
                index += 1
            finally:
                self._runtime.on_connection(False)
            # grpc.aio may turn our own cancellation (agent stopping) into an AioRpcError
            # while a call is connecting; do not swallow it and loop on forever.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            if clock.monotonic() - started >= self._settings.healthy_period:
                attempt = 0
            delay = self._settings.backoff.delay(attempt, self._draw, floor)
            attempt += 1
            await asyncio.sleep(delay)

    def _count_resync(self, reason: str) -> None:
        self._runtime.metrics.resyncs_total.labels(reason=reason).inc()

    async def _stream(self, address: str) -> None:
        provider = self._settings.credentials
        credentials = provider() if provider is not None else None
        options = [*CHANNEL_OPTIONS, *self._settings.channel_options]
        channel = (
            grpc.aio.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.aio.insecure_channel(address, options=options)
        )
        async with channel:
            call = watch_grpc.WatchServiceStub(channel).WatchLocks()
            state = self._runtime.view.state
            hello = pb.WatchHello(
                agent_id=self._settings.agent_id,
                epoch=state.epoch,
                applied_revision=state.revision,
                version=__version__,
                packed_locks=True,  # lockd.domain.packed_form: filed for less than a Lock
            )
            self._wanted = self._acked = 0
            await call.write(pb.WatchLocksRequest(hello=hello))
            view = self._runtime.view
            silence = StreamSilence(self._runtime.clock, lambda: view.heartbeat_interval)
            receiver = asyncio.create_task(self._receive(call, silence))
            watchdog = asyncio.create_task(silence.expired())
            acker = asyncio.create_task(self._ack_forever(call))
            try:
                await asyncio.wait((receiver, watchdog), return_when=asyncio.FIRST_COMPLETED)
                if receiver.done():
                    receiver.result()  # how the stream ended (raises)
                else:
                    raise StreamEnded("silent", 0.0)
            finally:
                for task in (receiver, watchdog, acker):
                    task.cancel()
                for task in (receiver, watchdog, acker):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                call.cancel()

    async def _receive(self, call: Any, silence: StreamSilence) -> None:
        """Feed every response to the runtime. Acks go out from the acker task, so
        reading never waits for an ack's write."""
        runtime = self._runtime
        first = True
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                raise StreamEnded("closed", 0.0)
            silence.heard()
            if first:
                runtime.on_connection(True)
                first = False
            kind = response.WhichOneof("message")
            if kind == "events":
                batch = response.events
                await self._apply_events(batch)
                if batch.ack_requested and batch.epoch == runtime.view.state.epoch:
                    self._want(batch.to_revision)
            elif kind == "heartbeat":
                beat = response.heartbeat
                interval = convert.duration_from_pb(beat.interval).total_seconds()
                runtime.on_heartbeat(beat.epoch, beat.revision, beat.store_healthy, interval)
            elif kind == "ack_request":
                if response.ack_request.epoch == runtime.view.state.epoch:
                    self._want(response.ack_request.revision)
            elif kind == "snapshot_begin":
                begin = response.snapshot_begin
                runtime.on_snapshot_begin(begin.epoch, begin.revision)
            elif kind == "snapshot_chunk":
                # Applied as it arrives: the view never holds a second copy.
                runtime.on_snapshot_chunk(*convert.snapshot_chunk_from_pb(response.snapshot_chunk))
            elif kind == "snapshot_end":
                end = response.snapshot_end
                held = runtime.view.state.epoch  # "" = an empty view's first fill
                runtime.on_snapshot_end(end.epoch, end.revision, end.count)
                if held:
                    self._count_resync("epoch_changed" if end.epoch != held else "too_old")
                self._want(end.revision)  # the server learns at once that we synced
            elif kind == "reset":
                reset = response.reset
                reason = RESET_REASON_NAMES.get(reset.reason, "unspecified")
                if reason == "locked":
                    await self._last_ack(call)
                raise StreamEnded(
                    reason, convert.duration_from_pb(reset.retry_after).total_seconds()
                )
            else:
                raise ValidationError(f"unexpected watch response {kind!r}")

    async def _apply_events(self, batch: pb.EventBatch) -> None:
        """Apply a batch, at most APPLY_SLICE events per loop turn.

        Each slice is a contiguous run of revisions, so between two slices the view is
        exactly the state at a revision; the view still refuses a gap where it starts.
        """
        runtime = self._runtime
        items = batch.events
        count = len(items)
        if count <= APPLY_SLICE:
            events = convert.events_from_pb(items)
            runtime.on_events(batch.epoch, batch.from_revision, batch.to_revision, events)
            return
        if count != batch.to_revision - batch.from_revision + 1:
            raise ViewMismatch(
                f"batch {batch.from_revision}..{batch.to_revision} carries {count} events"
            )
        for start in range(0, count, APPLY_SLICE):
            events = convert.events_from_pb(items[start : start + APPLY_SLICE])
            first = batch.from_revision + start
            runtime.on_events(batch.epoch, first, first + len(events) - 1, events)
            await asyncio.sleep(0)  # let the socket's calls in

    def _want(self, revision: int) -> None:
        if revision > self._wanted:
            self._wanted = revision
            self._nudge.set()

    async def _ack(self, call: Any) -> None:
        """Acknowledge what is saved — never more than the agent would enforce after a
        crash (lockd.agent.view_saver)."""
        epoch, revision = self._runtime.saver.saved
        ack = pb.WatchAck(
            epoch=epoch,
            applied_revision=revision,
            state=convert.SYNC_STATE_TO_PB[self._runtime.sync_state()],
        )
        if epoch == self._runtime.view.state.epoch:
            self._acked = max(self._acked, revision)
        async with self._write_lock:
            try:
                await call.write(pb.WatchLocksRequest(ack=ack))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as error:
                # The stream is ending. Reading it tells how (a Reset and its
                # retry_after, or the error); a failed ack must not mask that.
                _log.debug("ack not sent", error=repr(error))

    def _covered(self) -> bool:
        """The saved view reaches the revision somebody asked for."""
        epoch, revision = self._runtime.saver.saved
        return epoch == self._runtime.view.state.epoch and revision >= self._wanted

    async def _ack_forever(self, call: Any) -> None:
        """Ack every heartbeat interval (lockd.domain.ack_cadence), and at once when an
        asked-for revision is saved."""
        runtime, saver = self._runtime, self._runtime.saver
        clock = runtime.clock
        cadence = AckCadence(clock.monotonic(), random.random)
        while True:
            if self._wanted > self._acked and self._covered():
                await self._ack(call)
                continue
            # Waiting for the saver (something asked is not saved yet) or for a request.
            event = saver.progress if self._wanted > self._acked else self._nudge
            event.clear()
            if self._wanted > self._acked and self._covered():
                continue  # saved between the check and the clear
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, cadence.due - clock.monotonic())):
                    await event.wait()
                    continue
            await self._ack(call)
            cadence.sent(clock.monotonic(), runtime.view.heartbeat_interval)

    async def _last_ack(self, call: Any) -> None:
        """Locked out: ack what was applied (once saved), then close our side, so the
        server can count this agent as having applied the lock that cut it off."""
        self._want(self._runtime.view.state.revision)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LOCKED_SAVE_WAIT):
                while not self._covered():
                    self._runtime.saver.progress.clear()
                    if self._covered():
                        break
                    await self._runtime.saver.progress.wait()
        await self._ack(call)
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            async with self._write_lock:
                await call.done_writing()

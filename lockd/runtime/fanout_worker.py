"""A watch worker: a process of the auth server that serves WatchLocks on its port.

One Python process drives one core; `auth_service.watch_workers: N` runs the auth server
plus N-1 of these, all listening on the auth port (SO_REUSEPORT, between this server's
own processes), so the kernel spreads agents' connections over them. A worker never
writes: it opens the SQLite file as a WAL reader and keeps its own `ReplicationHub`, fed
by the same `LogTailer` as an auth replica on PostgreSQL (the auth server's commit
wake-ups arrive on the control channel instead of a NOTIFY, and the tail also reads the
log every second without one), so its streams deliver every revision in order or reset,
exactly like the auth server's own. What its agents do (connect, ack, disconnect) goes
back to the auth server, which answers `lockctl status` and `lock --wait` for all of
them and tells the workers which revision is awaited. Every other call arriving on a
worker's connections is forwarded to the auth server (lockd.runtime.call_forwarder).

Run as `python -m lockd.runtime.fanout_worker FD` by lockd.runtime.fanout_pool; FD is its
end of the control channel (lockd.runtime.worker_channel). When that channel ends — the
auth server stopped it, or died however it died — the worker resets its streams
(shutdown) and exits: it never outlives its server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import structlog
from prometheus_client import CollectorRegistry

from lockd import __version__
from lockd.api.handler import admin_caller, with_source
from lockd.api.interceptors import server_interceptors
from lockd.api.server_tls import server_credentials, tls_caller
from lockd.api.watch_servicer import ProtoWatchEncoder, WatchHandler
from lockd.auth.agents import AgentRegistry
from lockd.auth.auth_service import AuthService, ClusterInfo
from lockd.auth.hub import ReplicationHub, ResetReason
from lockd.auth.log_tailer import LogTailer
from lockd.auth.watch_stream import WatchSettings
from lockd.domain.addresses import join_host_port
from lockd.domain.errors import LockdError, UnavailableError
from lockd.domain.events import ReplicatedState
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock, SystemClock
from lockd.domain.timeparse import format_rfc3339
from lockd.lifetime import cancel_and_wait
from lockd.obs.audit import AuditEvent
from lockd.obs.logging import configure_logging
from lockd.obs.metrics import AuthMetrics
from lockd.runtime.call_forwarder import CallForwarder
from lockd.runtime.grpc_servers import SHARED_PORT_OPTIONS
from lockd.runtime.worker_channel import ChannelClosed, ControlChannel, Message
from lockd.store import SqliteStore

_log = structlog.get_logger("lockd.auth.worker")

METRICS_INTERVAL = 1.0
# What a worker reports of its fan-out: key -> (sample name, labels) in its AuthMetrics.
WORKER_METRICS: dict[str, tuple[str, dict[str, str]]] = {
    "lockd_watch_streams": ("lockd_watch_streams", {}),
    "lockd_events_sent_total": ("lockd_events_sent_total", {}),
    "lockd_event_batches_sent_total": ("lockd_event_batches_sent_total", {}),
    "lockd_snapshots_sent_total": ("lockd_snapshots_sent_total", {}),
    **{
        f"lockd_resets_total:{reason.value}": ("lockd_resets_total", {"reason": reason.value})
        for reason in ResetReason
    },
}
# Forwarded calls carry whatever the auth server answers: no size limit of their own.
FORWARD_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs, sent by the auth server as the first message."""

    index: int
    db_path: str
    host: str
    port: int
    forward_socket: str
    cluster_name: str
    static_locking_mode: str | None
    heartbeat_seconds: float
    slow_consumer_seconds: float
    retry_after_seconds: float
    snapshot_bytes_in_flight: int
    ring_capacity: int
    shutdown_grace: float
    log_format: str = "auto"
    log_level: str = "info"
    # The auth server's key and certificate chain and the cluster CA, PEM; empty: plaintext.
    tls_key: str = ""
    tls_cert: str = ""
    tls_ca: str = ""
    awaited: int = 0

    def to_message(self) -> Message:
        return {"spec": asdict(self)}

    @classmethod
    def from_message(cls, message: Message) -> WorkerSpec:
        return cls(**message["spec"])

    def watch_settings(self) -> WatchSettings:
        return WatchSettings(
            heartbeat_interval=timedelta(seconds=self.heartbeat_seconds),
            slow_consumer_after=timedelta(seconds=self.slow_consumer_seconds),
            snapshot_bytes_in_flight=self.snapshot_bytes_in_flight,
            retry_after=timedelta(seconds=self.retry_after_seconds),
        )


class WorkerLog:
    """The `SharedLog` of a worker: the auth server's commit wake-ups, the SQLite
    file's head read through the worker's store, and no writes (one writer: the auth
    server)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._announced = 0
        self._changed = asyncio.Event()

    def announce(self, revision: int) -> None:
        if revision > self._announced:
            self._announced = revision
            self._changed.set()

    async def wait_for_commit(self, after_revision: int, at_most: float) -> None:
        self._changed.clear()
        if self._announced > after_revision:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._changed.wait()

    async def head(self) -> tuple[str, int]:
        return await self._store.head()

    async def start_new_epoch(self, expected_epoch: str) -> str:
        # Only the writer may start a history; a worker that finds the file behind what it
        # served stays unhealthy (its heartbeats vouch for nothing) until the file is right.
        raise UnavailableError(
            "a watch worker found the store behind what it served; only the auth server "
            "writes the store"
        )


class RelayedAgents(AgentRegistry):
    """The worker's agent registry; every change also goes to the auth server's."""

    relay: ControlChannel | None = None

    def _send(self, message: Message) -> None:
        if self.relay is None:
            return
        try:
            self.relay.send(message)
        except ChannelClosed:
            # The auth server is gone: the control loop sees the end and stops the worker.
            _log.debug("agent update not relayed: the control channel is closed")

    def connect(self, agent_id: str, address: str, now: datetime) -> int:
        token = super().connect(agent_id, address, now)
        self._send({"connect": [agent_id, address, token]})
        return token

    def heard(self, agent_id: str, token: int, now: datetime) -> None:
        super().heard(agent_id, token, now)
        self._send({"heard": [agent_id, token]})

    def ack(
        self, agent_id: str, token: int, epoch: str, revision: int, state: str, now: datetime
    ) -> None:
        super().ack(agent_id, token, epoch, revision, state, now)
        self._send({"ack": [agent_id, token, epoch, revision, state]})

    def disconnect(self, agent_id: str, token: int) -> None:
        super().disconnect(agent_id, token)
        self._send({"disconnect": [agent_id, token]})

    def lock_out(self, agent_id: str, token: int) -> None:
        super().lock_out(agent_id, token)
        self._send({"lock_out": [agent_id, token]})


class RelayedAudit:
    """The worker's audit sink: records go to the auth server's audit trail."""

    def __init__(self, channel: ControlChannel) -> None:
        self._channel = channel

    def emit(self, event: AuditEvent) -> None:
        record = {
            "event": event.event,
            "code": event.code,
            "time": format_rfc3339(event.time),
            "cluster": event.cluster,
            "fields": dict(event.fields),
        }
        try:
            self._channel.send({"audit": record})
        except ChannelClosed:
            _log.warning("audit record lost: the auth server is gone", audit=record)

    def close(self) -> None:
        """Nothing to close: the channel belongs to the worker."""


async def serve(channel: ControlChannel) -> None:
    """Serve WatchLocks as the spec says until the control channel ends or says stop."""
    first = await channel.receive()
    if first is None:
        return  # the auth server went away before sending anything
    spec = WorkerSpec.from_message(first)
    configure_logging(spec.log_format, spec.log_level)
    clock = SystemClock()
    store = SqliteStore(Path(spec.db_path))
    await store.open()
    try:
        await _serve_store(channel, spec, store, clock)
    finally:
        await store.close()


async def _serve_store(
    channel: ControlChannel, spec: WorkerSpec, store: SqliteStore, clock: Clock
) -> None:
    snapshot = await store.snapshot()
    state = ReplicatedState.from_resources(snapshot.epoch, snapshot.revision, snapshot.resources)
    hub = ReplicationHub(state, ProtoWatchEncoder(), store.events_since, clock, spec.ring_capacity)
    log = WorkerLog(store)
    tailer = LogTailer(hub, store, log, clock)
    hub.health = lambda: store.healthy and tailer.current
    settings = spec.watch_settings()
    agents = RelayedAgents(silent_after=3 * settings.heartbeat_interval)
    agents.request_ack(spec.awaited)
    agents.relay = channel
    mode = None if spec.static_locking_mode is None else LockingMode(spec.static_locking_mode)
    cluster = ClusterInfo(spec.cluster_name, __version__, mode)
    service = AuthService(store, hub, agents, clock, RelayedAudit(channel), cluster)
    registry = CollectorRegistry()
    watch = WatchHandler(hub, store, agents, clock, settings, AuthMetrics(registry), service)
    await tailer.catch_up()
    forward = grpc.aio.insecure_channel(f"unix:{spec.forward_socket}", options=FORWARD_OPTIONS)
    server = grpc.aio.server(options=SHARED_PORT_OPTIONS, interceptors=server_interceptors(None))
    tls = bool(spec.tls_key)
    caller_of = with_source(tls_caller(clock) if tls else admin_caller)
    server.add_generic_rpc_handlers((watch.rpc_handler(caller_of), CallForwarder(forward, tls)))
    address = join_host_port(spec.host, spec.port)
    if tls:
        credentials = server_credentials(
            spec.tls_key.encode(),
            spec.tls_cert.encode(),
            spec.tls_ca.encode(),
            require_client_cert=True,
        )
        server.add_secure_port(address, credentials)
    else:
        server.add_insecure_port(address)
    await server.start()
    tail = asyncio.create_task(tailer.run_forever())
    reports = asyncio.create_task(_report_metrics(channel, registry))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    channel.send({"ready": os.getpid()})
    _log.info(
        "watch worker serving",
        worker=spec.index,
        address=address,
        revision=hub.revision,
        forward_socket=spec.forward_socket,
    )
    try:
        orphaned = await _follow_channel(channel, log, agents, stop)
    finally:
        hub.close()  # Reset(shutdown) to every stream
        await cancel_and_wait((tail, reports))
        await server.stop(spec.shutdown_grace)
        await forward.close()
        _log.info("watch worker stopped", worker=spec.index)
    if orphaned:
        # The auth server died without its cleanup: its private forwarding directory
        # would stay behind in /tmp (every worker tries; the first one wins).
        forward_dir = Path(spec.forward_socket).parent
        await asyncio.to_thread(shutil.rmtree, forward_dir, True)


async def _report_metrics(channel: ControlChannel, registry: CollectorRegistry) -> None:
    """Every `METRICS_INTERVAL`, this worker's fan-out totals for the auth server's
    /metrics (it adds them to its own: lockd.runtime.fanout_pool)."""
    while True:
        await asyncio.sleep(METRICS_INTERVAL)
        totals = {
            key: registry.get_sample_value(name, labels) or 0.0
            for key, (name, labels) in WORKER_METRICS.items()
        }
        try:
            channel.send({"metrics": totals})
        except ChannelClosed:
            return  # the control loop sees the end and stops the worker


async def _follow_channel(
    channel: ControlChannel, log: WorkerLog, agents: AgentRegistry, stop: asyncio.Event
) -> bool:
    """Apply the auth server's messages until it says stop, goes away, or SIGTERM; True
    when it went away (the channel ended without a stop)."""
    stopped = asyncio.create_task(stop.wait())
    try:
        while True:
            receive = asyncio.create_task(channel.receive())
            await asyncio.wait((receive, stopped), return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                return False
            message = receive.result()
            if message is None or "stop" in message:
                return message is None
            if "commit" in message:
                log.announce(int(message["commit"]))
            elif "await" in message:
                agents.request_ack(int(message["await"]))
    finally:
        stopped.cancel()


def main(argv: list[str]) -> int:
    """`python -m lockd.runtime.fanout_worker FD`."""
    # Ctrl-C and a terminal's hangup reach the whole process group: the auth server stops
    # its workers itself (and a worker has no log file of its own to reopen on SIGHUP).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[1]))

    async def run() -> None:
        channel = await ControlChannel.over(sock)
        try:
            await serve(channel)
        finally:
            await channel.close()

    try:
        asyncio.run(run())
    except LockdError as error:  # the store cannot be read: say so, the server reports it
        _log.error("watch worker cannot serve", error=str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The auth server as a running thing: store, hub, services, background loops, gRPC.

`AuthApp.start()` builds the whole server or nothing: it opens the store and loads its
snapshot (health turns SERVING only then), joins the replicas of a shared store
(lockd.runtime.replication), serves on TCP and on the local admin socket, and starts
the expiry, compaction and health loops. Ports are never shared with another process
(no SO_REUSEPORT) — except, with `watch_workers` > 1, the auth port with this server's
own watch workers (lockd.runtime.fanout_pool), which serve WatchLocks beside it and
forward every other call to it over a private socket. The admin socket is refused when
another server answers on it and removed at stop only if it is still the file this
server created (lockd.runtime.unix_socket). A started `AuthApp` is an async context
manager; leaving it (or `stop()`) stops gracefully — NOT_SERVING, Reset(shutdown) to
every watch stream (the workers' too), drain, leave the replicas, close.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import structlog
from prometheus_client import CollectorRegistry

from lockd import __version__
from lockd.api.watch_servicer import ProtoWatchEncoder, WatchHandler
from lockd.auth import background
from lockd.auth.agents import AgentRegistry
from lockd.auth.auth_service import AuthService, ClusterInfo
from lockd.auth.certificates import DEFAULT_AGENT_CERT_TTL
from lockd.auth.hub import ReplicationHub
from lockd.auth.timed_store import TimedStore
from lockd.auth.watch_stream import WatchSettings
from lockd.domain.errors import ValidationError
from lockd.domain.events import ReplicatedState
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock, Store
from lockd.lifetime import StopOnExit, cancel_and_wait
from lockd.obs.audit import AuditSink
from lockd.obs.metrics import AuthMetrics, GrpcServerMetrics
from lockd.runtime.auth_listeners import Listeners, ServerBuilder, worker_spec
from lockd.runtime.fanout_pool import WatchWorkers
from lockd.runtime.grpc_servers import HealthReporter
from lockd.runtime.replication import Replication
from lockd.runtime.unix_socket import OwnedSocket
from lockd.store import SqliteStore
from lockd.v1 import (
    cluster_service_pb2,
    identity_service_pb2,
    lock_service_pb2,
    token_service_pb2,
    watch_service_pb2,
)

_log = structlog.get_logger("lockd.auth")

SERVICE_NAMES = (
    lock_service_pb2.DESCRIPTOR.services_by_name["LockService"].full_name,
    cluster_service_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
    watch_service_pb2.DESCRIPTOR.services_by_name["WatchService"].full_name,
    identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
    token_service_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
)


@dataclass(frozen=True, slots=True)
class AuthServerSettings:
    cluster_name: str
    listen_addr: str = "127.0.0.1:3025"
    admin_socket: Path | None = None
    static_locking_mode: LockingMode | None = None
    watch: WatchSettings = field(default_factory=WatchSettings)
    ring_capacity: int = 4096
    shutdown_grace: float = 5.0
    # Create Teleport's preset roles in a fresh store (lockd.domain.presets). The daemon
    # does; embedding code and tests that want an empty cluster leave it off.
    preset_roles: bool = False
    # This replica's name in `lockctl status`; "" = <hostname>:<port>.
    replica_id: str = ""
    # None: plaintext on listen_addr, every TCP caller is the admin (loopback dev only).
    tls: TlsSettings | None = None
    # Processes serving WatchLocks on listen_addr, this one included (SQLite store only).
    watch_workers: int = 1
    # The workers' logging (the daemon's log settings).
    log_format: str = "auto"
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """mTLS on listen_addr with the cluster CA kept in `ca_dir`, plus the join port."""

    ca_dir: Path
    join_listen_addr: str = "127.0.0.1:3026"
    # Extra names and addresses for the server certificate (besides listen host, localhost).
    hosts: tuple[str, ...] = ()
    agent_cert_ttl: timedelta = DEFAULT_AGENT_CERT_TTL


class AuthApp(StopOnExit):
    """A started auth server. Build it with `AuthApp.start()`; never half-built."""

    def __init__(
        self,
        settings: AuthServerSettings,
        store: Store,
        hub: ReplicationHub,
        service: AuthService,
        watch: WatchHandler,
        agents: AgentRegistry,
        metrics: AuthMetrics,
        health_reporter: HealthReporter,
        listeners: Listeners,
        replication: Replication,
        tasks: list[asyncio.Task[None]],
        workers: WatchWorkers | None = None,
    ) -> None:
        self.settings = settings
        self.replication = replication
        self.store = store
        self.hub = hub
        self.service = service
        self.watch = watch
        self.agents = agents
        self.metrics = metrics
        self.port = listeners.port
        self.join_port = listeners.join_port
        self.ca = listeners.ca
        self._health = health_reporter
        self._servers = listeners.servers
        self._admin_socket = listeners.admin_socket
        self._forward_dir = listeners.forward_dir
        self._tasks = tasks
        self.workers = workers

    @classmethod
    async def start(
        cls,
        settings: AuthServerSettings,
        store: Store,
        clock: Clock,
        audit: AuditSink,
        metrics: AuthMetrics | None = None,
        grpc_metrics: GrpcServerMetrics | None = None,
    ) -> AuthApp:
        """Open the store, build every part, serve; on failure nothing is left running."""
        if settings.watch_workers > 1 and not isinstance(store, SqliteStore):
            raise ValidationError(
                f"watch workers tail a SQLite store; this one is {store.type} "
                "(set auth_service.watch_workers to 1)"
            )
        metrics = metrics if metrics is not None else AuthMetrics(CollectorRegistry())
        health_reporter = HealthReporter(SERVICE_NAMES)
        await health_reporter.set_serving(False)  # until the store is loaded
        timed = TimedStore(
            store,
            lambda operation, seconds: metrics.store_operation_seconds.labels(
                operation=operation
            ).observe(seconds),
        )
        await timed.open()
        started: list[grpc.aio.Server] = []
        listeners: Listeners | None = None
        workers: WatchWorkers | None = None
        try:
            snapshot = await timed.snapshot()
            state = ReplicatedState.from_resources(
                snapshot.epoch, snapshot.revision, snapshot.resources
            )
            hub = ReplicationHub(
                state, ProtoWatchEncoder(), timed.events_since, clock, settings.ring_capacity
            )
            # A healthy agent acks every heartbeat interval: three without a word is silence.
            agents = AgentRegistry(silent_after=3 * settings.watch.heartbeat_interval)
            cluster = ClusterInfo(settings.cluster_name, __version__, settings.static_locking_mode)
            service = AuthService(timed, hub, agents, clock, audit, cluster)
            replication = Replication.build(store, timed, hub, agents, clock)
            await replication.prepare()
            if settings.preset_roles:
                await service.create_preset_roles()  # a fresh store only
            await service.apply_static_locking_mode()
            watch = WatchHandler(hub, timed, agents, clock, settings.watch, metrics, service)
            builder = ServerBuilder(
                service, watch, replication.replicas, health_reporter, grpc_metrics
            )
            admin = None
            if settings.admin_socket is not None:
                admin = OwnedSocket(settings.admin_socket, "lockd auth server (admin socket)")
                await asyncio.to_thread(admin.prepare)  # probes a socket file found there
            forward_dir = None
            if settings.watch_workers > 1:
                forward_dir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="lockd-"))
            listeners = builder.listeners(settings, clock, admin, forward_dir)
            for server in listeners.servers:
                await server.start()
                started.append(server)
            if listeners.admin_socket is not None:
                listeners.admin_socket.claim()
                os.chmod(listeners.admin_socket.path, 0o600)
            if listeners.forward_dir is not None:
                assert isinstance(store, SqliteStore)  # checked above
                workers = WatchWorkers(
                    worker_spec(settings, store.path, listeners, listeners.forward_dir),
                    settings.watch_workers - 1,
                    agents,
                    audit,
                    clock,
                    metrics,
                )
                await workers.start()
                hub.on_batch.append(workers.publish)
            replication.identify(settings.listen_addr, listeners.port, settings.replica_id)
            await replication.join()
        except BaseException:
            await asyncio.gather(*(server.stop(None) for server in started))
            if listeners is not None and listeners.admin_socket is not None:
                listeners.admin_socket.remove()
            if listeners is not None and listeners.forward_dir is not None:
                await asyncio.to_thread(shutil.rmtree, listeners.forward_dir, True)
            await store.close()
            raise
        leader = replication.leadership.is_leader
        loops = [
            background.expire_locks_forever(service, leader),
            background.compact_log_forever(service, leader),
            background.watch_store_health_forever(service, health_reporter.set_serving),
            background.export_metrics_forever(service, metrics),
            *replication.loops(),
        ]
        tasks = [asyncio.create_task(loop) for loop in loops]
        app = cls(
            settings,
            store,
            hub,
            service,
            watch,
            agents,
            metrics,
            health_reporter,
            listeners,
            replication,
            tasks,
            workers,
        )
        _log.info(
            "auth server started",
            listen_addr=settings.listen_addr,
            port=app.port,
            store=store.type,
            replica=replication.replicas.replica_id,
            leader=leader(),
            epoch=hub.epoch,
            revision=hub.revision,
            watch_workers=settings.watch_workers,
        )
        return app

    async def stop(self) -> None:
        """Graceful stop: NOT_SERVING, Reset(shutdown) to every stream, drain, close."""
        await self._health.set_serving(False)
        self.hub.close()
        await cancel_and_wait(self._tasks)
        # The workers drain their streams while they can still forward calls here.
        stopping = [server.stop(self.settings.shutdown_grace) for server in self._servers]
        if self.workers is not None:
            stopping.append(self.workers.stop())
        await asyncio.gather(*stopping)
        await self.replication.leave()
        await self.store.close()
        if self._admin_socket is not None:
            self._admin_socket.remove()
        if self._forward_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._forward_dir, True)
        _log.info("auth server stopped")

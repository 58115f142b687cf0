"""The auth server as a running thing: store, hub, services, background loops, gRPC.

`AuthApp.start()` builds the whole server or nothing: it opens the store and loads its
snapshot (health turns SERVING only then), serves on TCP and on the local admin socket,
and starts the expiry, compaction and store-health loops. A started `AuthApp` is an async
context manager; leaving it (or `stop()`) stops gracefully — NOT_SERVING, Reset(shutdown)
to every watch stream, drain, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
import structlog
from prometheus_client import CollectorRegistry

from lockd import __version__
from lockd.api.cluster_servicer import ClusterServicer
from lockd.api.handler import CallerResolver, admin_caller
from lockd.api.identity_servicer import IdentityServicer
from lockd.api.interceptors import server_interceptors
from lockd.api.lock_servicer import LockServicer
from lockd.api.server_tls import anonymous_caller, server_credentials, server_identity, tls_caller
from lockd.api.watch_servicer import ProtoWatchEncoder, WatchHandler
from lockd.auth import background
from lockd.auth.agents import AgentRegistry
from lockd.auth.auth_service import AuthService, ClusterInfo
from lockd.auth.certificates import DEFAULT_AGENT_CERT_TTL, IdentityService
from lockd.auth.hub import ReplicationHub
from lockd.auth.timed_store import TimedStore
from lockd.auth.watch_stream import WatchSettings
from lockd.domain.addresses import split_host_port
from lockd.domain.events import ReplicatedState
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock, Store
from lockd.obs.audit import AuditSink
from lockd.obs.metrics import AuthMetrics, GrpcServerMetrics
from lockd.pki import ClusterCA
from lockd.runtime.grpc_servers import SERVER_OPTIONS, HealthReporter
from lockd.v1 import (
    cluster_service_pb2,
    identity_service_pb2,
    lock_service_pb2,
    watch_service_pb2,
)
from lockd.v1 import cluster_service_pb2_grpc as cluster_grpc
from lockd.v1 import identity_service_pb2_grpc as identity_grpc
from lockd.v1 import lock_service_pb2_grpc as lock_grpc

_log = structlog.get_logger("lockd.auth")

SERVICE_NAMES = (
    lock_service_pb2.DESCRIPTOR.services_by_name["LockService"].full_name,
    cluster_service_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
    watch_service_pb2.DESCRIPTOR.services_by_name["WatchService"].full_name,
    identity_service_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
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
    # None: plaintext on listen_addr, every TCP caller is the admin (loopback dev only).
    tls: TlsSettings | None = None


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """mTLS on listen_addr with the cluster CA kept in `ca_dir`, plus the join port."""

    ca_dir: Path
    join_listen_addr: str = "127.0.0.1:3026"
    # Extra names and addresses for the server certificate (besides listen host, localhost).
    hosts: tuple[str, ...] = ()
    agent_cert_ttl: timedelta = DEFAULT_AGENT_CERT_TTL


@dataclass(frozen=True, slots=True)
class _Listeners:
    """The gRPC servers of one auth server, built but not started."""

    servers: list[grpc.aio.Server]
    port: int
    join_port: int = 0
    ca: ClusterCA | None = None


class AuthApp:
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
        listeners: _Listeners,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        self.settings = settings
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
        self._tasks = tasks

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
            await service.apply_static_locking_mode()
            watch = WatchHandler(hub, timed, agents, clock, settings.watch, metrics, service)
            builder = _ServerBuilder(service, watch, health_reporter, grpc_metrics)
            listeners = builder.listeners(settings, clock)
            for server in listeners.servers:
                await server.start()
                started.append(server)
        except BaseException:
            await asyncio.gather(*(server.stop(None) for server in started))
            await store.close()
            raise
        if settings.admin_socket is not None:
            os.chmod(settings.admin_socket, 0o600)
        tasks = [
            asyncio.create_task(background.expire_locks_forever(service)),
            asyncio.create_task(background.compact_log_forever(service)),
            asyncio.create_task(
                background.watch_store_health_forever(service, health_reporter.set_serving)
            ),
            asyncio.create_task(background.export_metrics_forever(service, metrics)),
        ]
        app = cls(
            settings, store, hub, service, watch, agents, metrics, health_reporter, listeners, tasks
        )
        _log.info(
            "auth server started",
            listen_addr=settings.listen_addr,
            port=app.port,
            store=store.type,
            epoch=hub.epoch,
            revision=hub.revision,
        )
        return app

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Graceful stop: NOT_SERVING, Reset(shutdown) to every stream, drain, close."""
        await self._health.set_serving(False)
        self.hub.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(
            *(server.stop(self.settings.shutdown_grace) for server in self._servers)
        )
        await self.store.close()
        if self.settings.admin_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                self.settings.admin_socket.unlink()
        _log.info("auth server stopped")


class _ServerBuilder:
    """Builds the auth server's gRPC servers: the main port, the join port, the admin socket."""

    def __init__(
        self,
        service: AuthService,
        watch: WatchHandler,
        health_reporter: HealthReporter,
        grpc_metrics: GrpcServerMetrics | None,
    ) -> None:
        self._service = service
        self._watch = watch
        self._health = health_reporter
        self._interceptors = server_interceptors(grpc_metrics)

    def listeners(self, settings: AuthServerSettings, clock: Clock) -> _Listeners:
        tls = settings.tls
        if tls is None:
            _log.warning(
                "serving plaintext gRPC without authentication (insecure dev mode)",
                listen_addr=settings.listen_addr,
            )
            main = self._server(admin_caller, None, "")
            listeners = _Listeners([main], main.add_insecure_port(settings.listen_addr))
            identity = None
        else:
            listeners, identity = self._tls_listeners(settings, tls, clock)
        if settings.admin_socket is not None:
            pin = "" if listeners.ca is None else listeners.ca.pin
            listeners.servers.append(self._admin_server(settings.admin_socket, identity, pin))
        return listeners

    def _tls_listeners(
        self, settings: AuthServerSettings, tls: TlsSettings, clock: Clock
    ) -> tuple[_Listeners, IdentityService]:
        now = clock.now()
        ca = ClusterCA.load_or_create(tls.ca_dir, settings.cluster_name, now)
        identity = IdentityService(ca, self._service, tls.agent_cert_ttl)
        host, _ = split_host_port(settings.listen_addr)
        key, cert = server_identity(ca, (host, *tls.hosts), now)
        main = self._server(tls_caller(clock), identity, ca.pin)
        port = main.add_secure_port(
            settings.listen_addr,
            server_credentials(key, cert, ca.cert_pem, require_client_cert=True),
        )
        join = grpc.aio.server(interceptors=self._interceptors)
        identity_grpc.add_IdentityServiceServicer_to_server(
            IdentityServicer(identity, anonymous_caller), join
        )
        join_port = join.add_secure_port(
            tls.join_listen_addr,
            server_credentials(key, cert, ca.cert_pem, require_client_cert=False),
        )
        return _Listeners([main, join], port, join_port, ca), identity

    def _admin_server(
        self, path: Path, identity: IdentityService | None, ca_pin: str
    ) -> grpc.aio.Server:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = self._server(admin_caller, identity, ca_pin)
        server.add_insecure_port(f"unix:{path}")
        return server

    def _server(
        self, caller_of: CallerResolver, identity: IdentityService | None, ca_pin: str
    ) -> grpc.aio.Server:
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=self._interceptors)
        lock_grpc.add_LockServiceServicer_to_server(LockServicer(self._service, caller_of), server)
        cluster_grpc.add_ClusterServiceServicer_to_server(
            ClusterServicer(self._service, caller_of, ca_pin), server
        )
        if identity is not None:
            identity_grpc.add_IdentityServiceServicer_to_server(
                IdentityServicer(identity, caller_of), server
            )
        server.add_generic_rpc_handlers((self._watch.rpc_handler(caller_of),))
        self._health.add_to(server)
        return server

"""The auth server as a running thing: store, hub, services, background loops, gRPC.

`AuthServerApp` owns the lifecycle: open the store and load its snapshot (health turns
SERVING only then), serve on TCP and on the local admin socket, run expiry, compaction
and store-health loops, and stop gracefully — NOT_SERVING, Reset(shutdown) to every
watch stream, drain, close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from lockd import __version__
from lockd.api.auth_servicers import ClusterServicer, LockServicer
from lockd.api.identity_servicer import IdentityServicer
from lockd.api.interceptors import ObservabilityInterceptor
from lockd.api.rpc import CallerResolver, admin_caller
from lockd.api.tls import anonymous_caller, server_credentials, server_identity, tls_caller
from lockd.api.watch import ProtoWatchEncoder, WatchHandler
from lockd.auth import background
from lockd.auth.agents import AgentRegistry
from lockd.auth.ca import ClusterCA
from lockd.auth.hub import ReplicationHub
from lockd.auth.identity import DEFAULT_AGENT_CERT_TTL, IdentityService
from lockd.auth.service import AuthService, ClusterInfo
from lockd.auth.timed_store import TimedStore
from lockd.auth.watch import WatchSettings
from lockd.domain.events import ReplicatedState
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock, Store
from lockd.obs.audit import AuditSink
from lockd.obs.metrics import AuthMetrics, GrpcServerMetrics
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

# Small HTTP/2 windows keep per-stream memory bounded (DESIGN §3).
SERVER_OPTIONS = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_concurrent_streams", 100_000),
]
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


class AuthServerApp:
    def __init__(
        self,
        settings: AuthServerSettings,
        store: Store,
        clock: Clock,
        audit: AuditSink,
        metrics: AuthMetrics | None = None,
        grpc_metrics: GrpcServerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else AuthMetrics(CollectorRegistry())
        self._interceptors = (
            [] if grpc_metrics is None else [ObservabilityInterceptor(grpc_metrics)]
        )
        self.store = store
        self.clock = clock
        self.audit = audit
        self.agents = AgentRegistry()
        self._health = health.aio.HealthServicer()
        self._servers: list[grpc.aio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.join_port = 0
        self.ca: ClusterCA | None = None
        self._identity: IdentityService | None = None
        self.service: AuthService
        self.hub: ReplicationHub
        self.watch: WatchHandler

    def _observe_store(self, operation: str, seconds: float) -> None:
        self.metrics.store_operation_seconds.labels(operation=operation).observe(seconds)

    async def start(self) -> None:
        await self._set_serving(False)  # until the store is loaded
        store = TimedStore(self.store, self._observe_store)
        await store.open()
        snapshot = await store.snapshot()
        state = ReplicatedState.from_resources(
            snapshot.epoch, snapshot.revision, snapshot.resources
        )
        self.hub = ReplicationHub(
            state,
            ProtoWatchEncoder(),
            store.events_since,
            self.clock,
            self.settings.ring_capacity,
        )
        cluster = ClusterInfo(
            self.settings.cluster_name, __version__, self.settings.static_locking_mode
        )
        self.service = AuthService(store, self.hub, self.agents, self.clock, self.audit, cluster)
        await self.service.apply_static_locking_mode()
        self.watch = WatchHandler(
            self.hub,
            store,
            self.agents,
            self.clock,
            self.settings.watch,
            self.metrics,
            self.service,
        )
        tls = self.settings.tls
        if tls is None:
            _log.warning(
                "serving plaintext gRPC without authentication (insecure dev mode)",
                listen_addr=self.settings.listen_addr,
            )
            main = self._build_server(admin_caller, None)
            self.port = main.add_insecure_port(self.settings.listen_addr)
            self._servers.append(main)
        else:
            self._start_tls(tls)
        if self.settings.admin_socket is not None:
            self._servers.append(self._admin_server(self.settings.admin_socket))
        for server in self._servers:
            await server.start()
        if self.settings.admin_socket is not None:
            os.chmod(self.settings.admin_socket, 0o600)
        self._tasks = [
            asyncio.create_task(background.expire_locks_forever(self.service)),
            asyncio.create_task(background.compact_log_forever(self.service)),
            asyncio.create_task(
                background.watch_store_health_forever(self.service, self._set_serving)
            ),
            asyncio.create_task(background.export_metrics_forever(self.service, self.metrics)),
        ]
        _log.info(
            "auth server started",
            listen_addr=self.settings.listen_addr,
            port=self.port,
            store=self.store.type,
            epoch=self.hub.epoch,
            revision=self.hub.revision,
        )

    def _start_tls(self, tls: TlsSettings) -> None:
        now = self.clock.now()
        self.ca = ClusterCA.load_or_create(tls.ca_dir, self.settings.cluster_name, now)
        identity = IdentityService(self.ca, self.service, tls.agent_cert_ttl)
        host = self.settings.listen_addr.rpartition(":")[0].strip("[]")
        key, cert = server_identity(self.ca, (host, *tls.hosts), now)
        main = self._build_server(tls_caller, identity)
        self.port = main.add_secure_port(
            self.settings.listen_addr,
            server_credentials(key, cert, self.ca.cert_pem, require_client_cert=True),
        )
        join = grpc.aio.server(interceptors=self._interceptors)
        identity_grpc.add_IdentityServiceServicer_to_server(
            IdentityServicer(identity, anonymous_caller), join
        )
        self.join_port = join.add_secure_port(
            tls.join_listen_addr,
            server_credentials(key, cert, self.ca.cert_pem, require_client_cert=False),
        )
        self._servers += [main, join]
        self._identity = identity

    def _admin_server(self, path: Path) -> grpc.aio.Server:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = self._build_server(admin_caller, self._identity)
        server.add_insecure_port(f"unix:{path}")
        return server

    def _build_server(
        self, caller_of: CallerResolver, identity: IdentityService | None
    ) -> grpc.aio.Server:
        server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=self._interceptors)
        lock_grpc.add_LockServiceServicer_to_server(LockServicer(self.service, caller_of), server)
        ca_pin = self.ca.pin if self.ca is not None else ""
        cluster_grpc.add_ClusterServiceServicer_to_server(
            ClusterServicer(self.service, caller_of, ca_pin), server
        )
        if identity is not None:
            identity_grpc.add_IdentityServiceServicer_to_server(
                IdentityServicer(identity, caller_of), server
            )
        server.add_generic_rpc_handlers((self.watch.rpc_handler(caller_of),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        return server

    async def _set_serving(self, healthy: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def stop(self) -> None:
        """Graceful stop: NOT_SERVING, Reset(shutdown) to every stream, drain, close."""
        await self._set_serving(False)
        if hasattr(self, "hub"):
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

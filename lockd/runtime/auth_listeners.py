"""The auth server's gRPC servers, built but not started: the auth port (shared with the
watch workers when there are some), the join port, the admin socket, and the private
socket the workers forward calls to (lockd.runtime.call_forwarder).

`ServerBuilder.listeners` builds them for `AuthApp.start` (lockd.runtime.auth_app), which
starts and stops them; `worker_spec` is what a watch worker is told about them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import structlog

from lockd.api.cluster_servicer import ClusterServicer
from lockd.api.handler import CallerResolver, admin_caller, with_source
from lockd.api.identity_servicer import IdentityServicer
from lockd.api.interceptors import server_interceptors
from lockd.api.lock_servicer import LockServicer
from lockd.api.server_tls import anonymous_caller, server_credentials, server_identity, tls_caller
from lockd.api.token_servicer import TokenServicer
from lockd.api.watch_servicer import WatchHandler
from lockd.auth.auth_service import AuthService
from lockd.auth.certificates import IdentityService
from lockd.auth.replica_set import ReplicaSet
from lockd.domain.addresses import split_host_port
from lockd.domain.errors import UnavailableError
from lockd.domain.ports import Clock
from lockd.obs.metrics import GrpcServerMetrics
from lockd.pki import ClusterCA
from lockd.runtime.call_forwarder import forwarded_caller
from lockd.runtime.fanout_pool import claim_port
from lockd.runtime.fanout_worker import WorkerSpec
from lockd.runtime.grpc_servers import SERVER_OPTIONS, SHARED_PORT_OPTIONS, HealthReporter
from lockd.runtime.unix_socket import OwnedSocket
from lockd.v1 import cluster_service_pb2_grpc as cluster_grpc
from lockd.v1 import identity_service_pb2_grpc as identity_grpc
from lockd.v1 import lock_service_pb2_grpc as lock_grpc
from lockd.v1 import token_service_pb2_grpc as token_grpc

if TYPE_CHECKING:  # auth_app imports this module
    from lockd.runtime.auth_app import AuthServerSettings, TlsSettings

_log = structlog.get_logger("lockd.auth")

FORWARD_SOCKET = "forward.sock"


@dataclass(frozen=True, slots=True)
class Listeners:
    """The gRPC servers of one auth server, built but not started."""

    servers: list[grpc.aio.Server]
    port: int
    join_port: int = 0
    ca: ClusterCA | None = None
    admin_socket: OwnedSocket | None = None
    # The server's TLS key and certificate chain (PEM), for the watch workers.
    tls_identity: tuple[bytes, bytes] | None = None
    # The private directory of the socket watch workers forward calls to.
    forward_dir: Path | None = None


class ServerBuilder:
    """Builds the auth server's gRPC servers: the main port, the join port, the admin socket."""

    def __init__(
        self,
        service: AuthService,
        watch: WatchHandler,
        replicas: ReplicaSet,
        health_reporter: HealthReporter,
        grpc_metrics: GrpcServerMetrics | None,
    ) -> None:
        self._service = service
        self._replicas = replicas
        self._watch = watch
        self._health = health_reporter
        self._interceptors = server_interceptors(grpc_metrics)

    def listeners(
        self,
        settings: AuthServerSettings,
        clock: Clock,
        admin: OwnedSocket | None,
        forward_dir: Path | None,
    ) -> Listeners:
        """The servers; with `forward_dir` (watch workers), the auth port is shared with
        them and a server on `forward_dir`/forward.sock takes the calls they forward."""
        tls = settings.tls
        if forward_dir is not None:
            claim_port(*split_host_port(settings.listen_addr))
        if tls is None:
            _log.warning(
                "serving plaintext gRPC without authentication (insecure dev mode)",
                listen_addr=settings.listen_addr,
            )
            main = self._server(admin_caller, None, "", shared=forward_dir is not None)
            port = bind(settings.listen_addr, lambda: main.add_insecure_port(settings.listen_addr))
            listeners = Listeners([main], port)
            identity = None
        else:
            listeners, identity = self._tls_listeners(settings, tls, clock, forward_dir)
        pin = "" if listeners.ca is None else listeners.ca.pin
        if admin is not None:
            listeners.servers.append(self._admin_server(admin, identity, pin))
            listeners = replace(listeners, admin_socket=admin)
        if forward_dir is not None:
            forwarded = forwarded_caller(clock, tls is not None)
            server = self._server(forwarded, identity, pin, source_from_peer=False)
            address = f"unix:{forward_dir / FORWARD_SOCKET}"
            bind(address, lambda: server.add_insecure_port(address))
            listeners.servers.append(server)
            listeners = replace(listeners, forward_dir=forward_dir)
        return listeners

    def _tls_listeners(
        self,
        settings: AuthServerSettings,
        tls: TlsSettings,
        clock: Clock,
        forward_dir: Path | None,
    ) -> tuple[Listeners, IdentityService]:
        now = clock.now()
        ca = ClusterCA.load_or_create(tls.ca_dir, settings.cluster_name, now)
        identity = IdentityService(ca, self._service, tls.agent_cert_ttl)
        host, _ = split_host_port(settings.listen_addr)
        key, cert = server_identity(ca, (host, *tls.hosts), now)
        main = self._server(tls_caller(clock), identity, ca.pin, shared=forward_dir is not None)
        main_credentials = server_credentials(key, cert, ca.cert_pem, require_client_cert=True)
        port = bind(
            settings.listen_addr,
            lambda: main.add_secure_port(settings.listen_addr, main_credentials),
        )
        join = grpc.aio.server(options=SERVER_OPTIONS, interceptors=self._interceptors)
        identity_grpc.add_IdentityServiceServicer_to_server(
            IdentityServicer(identity, anonymous_caller), join
        )
        join_credentials = server_credentials(key, cert, ca.cert_pem, require_client_cert=False)
        join_port = bind(
            tls.join_listen_addr,
            lambda: join.add_secure_port(tls.join_listen_addr, join_credentials),
        )
        listeners = Listeners([main, join], port, join_port, ca, tls_identity=(key, cert))
        return listeners, identity

    def _admin_server(
        self, owned: OwnedSocket, identity: IdentityService | None, ca_pin: str
    ) -> grpc.aio.Server:
        server = self._server(admin_caller, identity, ca_pin)
        address = f"unix:{owned.path}"
        bind(address, lambda: server.add_insecure_port(address))
        return server

    def _server(
        self,
        caller_of: CallerResolver,
        identity: IdentityService | None,
        ca_pin: str,
        *,
        shared: bool = False,
        source_from_peer: bool = True,
    ) -> grpc.aio.Server:
        """A server of every service; `shared`: its port is shared with the watch workers;
        `source_from_peer`: the caller's source is the peer (`caller_of` does not set it)."""
        if source_from_peer:
            caller_of = with_source(caller_of)  # the audit trail names where changes came from
        options = SHARED_PORT_OPTIONS if shared else SERVER_OPTIONS
        server = grpc.aio.server(options=options, interceptors=self._interceptors)
        lock_grpc.add_LockServiceServicer_to_server(LockServicer(self._service, caller_of), server)
        cluster_grpc.add_ClusterServiceServicer_to_server(
            ClusterServicer(self._service, self._replicas, caller_of, ca_pin), server
        )
        if identity is not None:
            identity_grpc.add_IdentityServiceServicer_to_server(
                IdentityServicer(identity, caller_of), server
            )
            token_grpc.add_TokenServiceServicer_to_server(
                TokenServicer(identity, caller_of), server
            )
        server.add_generic_rpc_handlers((self._watch.rpc_handler(caller_of),))
        self._health.add_to(server)
        return server


def worker_spec(
    settings: AuthServerSettings, db_path: Path, listeners: Listeners, forward_dir: Path
) -> WorkerSpec:
    watch, mode = settings.watch, settings.static_locking_mode
    key, cert = listeners.tls_identity or (b"", b"")
    return WorkerSpec(
        index=0,
        db_path=str(db_path),
        host=split_host_port(settings.listen_addr)[0],
        port=listeners.port,
        forward_socket=str(forward_dir / FORWARD_SOCKET),
        cluster_name=settings.cluster_name,
        static_locking_mode=None if mode is None else mode.value,
        heartbeat_seconds=watch.heartbeat_interval.total_seconds(),
        slow_consumer_seconds=watch.slow_consumer_after.total_seconds(),
        retry_after_seconds=watch.retry_after.total_seconds(),
        snapshot_bytes_in_flight=watch.snapshot_bytes_in_flight,
        ring_capacity=settings.ring_capacity,
        shutdown_grace=settings.shutdown_grace,
        log_format=settings.log_format,
        log_level=settings.log_level,
        tls_key=key.decode(),
        tls_cert=cert.decode(),
        tls_ca="" if listeners.ca is None else listeners.ca.cert_pem.decode(),
    )


def bind(address: str, add_port: Callable[[], int]) -> int:
    """`add_port()`, with grpc's bind failure (a taken port) as a clear error."""
    try:
        return add_port()
    except RuntimeError:
        # grpc says only "Failed to bind to address ...; set GRPC_VERBOSITY=debug".
        raise UnavailableError(
            f"cannot listen on {address}: the address is in use or not available "
            "(is another process listening there?)"
        ) from None

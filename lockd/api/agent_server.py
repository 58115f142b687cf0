"""The node agent as a running thing: view, watch client, timers and the Unix socket.

`AgentApp` loads the last persisted view (best_effort keeps enforcing it while the auth
server is unreachable), serves AgentService on a Unix socket (health SERVING after the
first sync), keeps the WatchLocks stream alive, ticks the freshness timer and saves the
view after changes.
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

from lockd.agent.persist import VIEW_FILE_NAME, ViewOwner, load_view
from lockd.agent.runtime import AgentRuntime
from lockd.api.agent_servicer import AgentServicer
from lockd.api.interceptors import ObservabilityInterceptor
from lockd.api.join import AgentIdentity, IdentityHolder, renew_forever
from lockd.api.watch_client import WatchClient, WatchClientSettings
from lockd.domain.backoff import Backoff
from lockd.domain.errors import ValidationError
from lockd.domain.events import ReplicatedState
from lockd.domain.ports import Clock
from lockd.domain.view import LocalView, ViewSettings
from lockd.obs.audit import AuditSink
from lockd.obs.metrics import AgentMetrics, GrpcServerMetrics
from lockd.v1 import agent_service_pb2
from lockd.v1 import agent_service_pb2_grpc as agent_grpc

_log = structlog.get_logger("lockd.agent")

AGENT_SERVICE = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name


@dataclass(frozen=True, slots=True)
class AgentSettings:
    cluster_name: str
    server_id: str
    auth_servers: tuple[str, ...]
    socket: Path
    socket_mode: int = 0o660
    max_staleness: timedelta = timedelta(minutes=5)
    # Where the last view is persisted; None disables persistence.
    data_dir: Path | None = None
    ack_interval: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    shutdown_grace: float = 2.0


class AgentApp:
    def __init__(
        self,
        settings: AgentSettings,
        clock: Clock,
        audit: AuditSink,
        metrics: AgentMetrics,
        grpc_metrics: GrpcServerMetrics | None = None,
        identity: AgentIdentity | None = None,
    ) -> None:
        # None: plaintext to the auth servers (insecure dev mode).
        self.identity = None if identity is None else IdentityHolder(identity)
        self._interceptors = (
            [] if grpc_metrics is None else [ObservabilityInterceptor(grpc_metrics)]
        )
        if not settings.auth_servers:
            raise ValidationError("the agent needs at least one auth server address")
        self.settings = settings
        self.clock = clock
        self.audit = audit
        self.metrics = metrics
        self._health = health.aio.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        owner = ViewOwner(settings.cluster_name, settings.server_id)
        view_file = None if settings.data_dir is None else settings.data_dir / VIEW_FILE_NAME
        view = LocalView(
            ViewSettings(settings.server_id, max_staleness=settings.max_staleness),
            self._load(view_file, owner),
        )
        self.runtime = AgentRuntime(view, clock, audit, metrics, owner, view_file)

    @staticmethod
    def _load(view_file: Path | None, owner: ViewOwner) -> ReplicatedState | None:
        if view_file is None:
            return None
        try:
            state = load_view(view_file, owner)
        except ValidationError as error:
            _log.warning("ignoring the persisted view", path=str(view_file), reason=str(error))
            return None
        if state is not None:
            _log.info(
                "loaded the persisted view",
                epoch=state.epoch,
                revision=state.revision,
                locks=len(state.locks),
            )
        return state

    async def start(self) -> None:
        await self._set_serving(False)
        socket = self.settings.socket
        socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            socket.unlink()
        server = grpc.aio.server(interceptors=self._interceptors)
        agent_grpc.add_AgentServiceServicer_to_server(AgentServicer(self.runtime), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (AGENT_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        server.add_insecure_port(f"unix:{socket}")
        await server.start()
        os.chmod(socket, self.settings.socket_mode)
        self._server = server
        watch = WatchClient(
            self.runtime,
            WatchClientSettings(
                agent_id=self.settings.server_id,
                auth_servers=self.settings.auth_servers,
                backoff=self.settings.backoff,
                ack_interval=self.settings.ack_interval,
                credentials=None if self.identity is None else self.identity.credentials,
            ),
        )
        self._tasks = [
            asyncio.create_task(watch.run_forever()),
            asyncio.create_task(self.runtime.tick_forever()),
            asyncio.create_task(self.runtime.persist_forever()),
            asyncio.create_task(self._serving_after_first_sync()),
        ]
        if self.identity is not None:
            self._tasks.append(
                asyncio.create_task(
                    renew_forever(
                        self.identity,
                        self.settings.auth_servers,
                        self.settings.server_id,
                        self.settings.data_dir,
                    )
                )
            )
        _log.info(
            "agent started",
            server_id=self.settings.server_id,
            socket=str(socket),
            auth_servers=list(self.settings.auth_servers),
        )

    async def _serving_after_first_sync(self) -> None:
        await self.runtime.synced_once.wait()
        await self._set_serving(True)

    async def _set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", AGENT_SERVICE):
            await self._health.set(name, status)

    async def stop(self) -> None:
        await self._set_serving(False)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runtime.close()
        if self._server is not None:
            await self._server.stop(self.settings.shutdown_grace)
        with contextlib.suppress(FileNotFoundError):
            self.settings.socket.unlink()
        _log.info("agent stopped")

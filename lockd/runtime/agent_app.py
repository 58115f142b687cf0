"""The node agent as a running thing: view, watch client, timers and the Unix socket.

`AgentApp.start()` loads the last persisted view (best_effort keeps enforcing it while
the auth server is unreachable), serves AgentService on a Unix socket (health SERVING
after the first sync), keeps the WatchLocks stream alive, ticks the freshness timer and
saves the view after changes. A started `AgentApp` is an async context manager.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import structlog

from lockd.agent.journal import ViewJournal
from lockd.agent.mode_file import MODES_FILE_NAME, load_modes, startup_modes
from lockd.agent.persist import ViewOwner
from lockd.agent.runtime import AgentRuntime
from lockd.agent.session_hub import MAX_MESSAGE_BYTES, SessionHub
from lockd.agent.view_saver import ViewSaver
from lockd.api.agent_servicer import AgentServicer
from lockd.api.interceptors import server_interceptors
from lockd.api.session_channel_servicer import ProtoSidecarEncoder
from lockd.client.agent_watcher import WatchClient, WatchClientSettings
from lockd.client.join import AgentIdentity, IdentityHolder, renew_forever
from lockd.domain.backoff import Backoff
from lockd.domain.errors import ValidationError
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock
from lockd.domain.view import LocalView, ViewSettings
from lockd.lifetime import StopOnExit, cancel_and_wait
from lockd.obs.audit import AuditSink
from lockd.obs.metrics import AgentMetrics, GrpcServerMetrics
from lockd.runtime.grpc_servers import HealthReporter
from lockd.runtime.unix_socket import OwnedSocket
from lockd.v1 import agent_service_pb2

_log = structlog.get_logger("lockd.agent")

AGENT_SERVICE = agent_service_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
# A sidecar message larger than this ends its channel with RESOURCE_EXHAUSTED.
SOCKET_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


@dataclass(frozen=True, slots=True)
class AgentSettings:
    cluster_name: str
    server_id: str
    auth_servers: tuple[str, ...]
    socket: Path
    socket_mode: int = 0o660
    max_staleness: timedelta = timedelta(minutes=5)
    # agent_service.locking_mode: the local minimum (strict: every interaction is strict).
    locking_floor: LockingMode = LockingMode.BEST_EFFORT
    # Where the last view is persisted; None disables persistence.
    data_dir: Path | None = None
    backoff: Backoff = field(default_factory=Backoff)
    shutdown_grace: float = 2.0


def load_runtime(
    settings: AgentSettings,
    clock: Clock,
    audit: AuditSink,
    metrics: AgentMetrics,
    runtime_class: type[AgentRuntime] = AgentRuntime,
) -> AgentRuntime:
    """The agent's runtime over its persisted view (or an empty one).

    The view is the base file plus its journal; when it cannot be recovered, the modes
    file (or, for an agent that synced before, strict) says what to assume about the
    cluster's locking modes until the first sync (lockd.agent.mode_file).
    """
    owner = ViewOwner(settings.cluster_name, settings.server_id)
    view_settings = ViewSettings(
        settings.server_id,
        max_staleness=settings.max_staleness,
        locking_floor=settings.locking_floor,
    )
    if settings.data_dir is None:
        view = LocalView(view_settings)
        return runtime_class(view, clock, audit, metrics, owner)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    journal = ViewJournal(settings.data_dir, owner)
    recovery = journal.recover()
    for problem in recovery.problems:
        _log.warning("ignoring the persisted view", reason=problem)
    modes_path = settings.data_dir / MODES_FILE_NAME
    try:
        saved_modes = load_modes(modes_path, owner)
    except ValidationError as error:
        _log.warning("ignoring the saved locking modes", reason=str(error))
        saved_modes = None
    state = recovery.state
    assumed = startup_modes(state is not None, recovery.existed or modes_path.exists(), saved_modes)
    if state is not None:
        _log.info(
            "loaded the persisted view",
            epoch=state.epoch,
            revision=state.revision,
            locks=len(state.locks),
            journal_records=recovery.replayed,
        )
    elif assumed is not None:
        _log.warning(
            "no usable persisted view: assuming these locking modes until the first sync",
            cluster_mode=assumed.cluster.value,
            strict_roles=sorted(assumed.strict_roles),
        )
    view = LocalView(view_settings, state, assumed)
    saver = ViewSaver.open(view, journal, recovery)
    return runtime_class(view, clock, audit, metrics, owner, saver)


class AgentApp(StopOnExit):
    """A started node agent. Build it with `AgentApp.start()`; never half-built."""

    def __init__(
        self,
        settings: AgentSettings,
        runtime: AgentRuntime,
        identity: IdentityHolder | None,
        health_reporter: HealthReporter,
        server: grpc.aio.Server,
        tasks: list[asyncio.Task[None]],
        hub: SessionHub,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.hub = hub
        # None: plaintext to the auth servers (insecure dev mode).
        self.identity = identity
        self._health = health_reporter
        self._server = server
        self._tasks = tasks
        self._socket: OwnedSocket | None = None  # set by start()

    @classmethod
    async def start(
        cls,
        settings: AgentSettings,
        clock: Clock,
        audit: AuditSink,
        metrics: AgentMetrics,
        grpc_metrics: GrpcServerMetrics | None = None,
        identity: AgentIdentity | None = None,
        runtime_class: type[AgentRuntime] = AgentRuntime,
    ) -> AgentApp:
        """Load the view, serve the socket, start the watch stream and the timers.

        `runtime_class` lets a benchmark time the real runtime (a subclass) in place.
        """
        if not settings.auth_servers:
            raise ValidationError("the agent needs at least one auth server address")
        # Reading the persisted view is file IO: off the event loop.
        runtime = await asyncio.to_thread(
            load_runtime, settings, clock, audit, metrics, runtime_class
        )
        holder = None if identity is None else IdentityHolder(identity)
        health_reporter = HealthReporter((AGENT_SERVICE,))
        await health_reporter.set_serving(False)
        socket = settings.socket
        # A live agent's socket is never taken over; a stale one is replaced.
        owned = OwnedSocket(socket, "lockd agent (agent socket)")
        await asyncio.to_thread(owned.prepare)
        server = grpc.aio.server(
            interceptors=server_interceptors(grpc_metrics), options=SOCKET_OPTIONS
        )
        hub = SessionHub(runtime, ProtoSidecarEncoder())
        server.add_generic_rpc_handlers((AgentServicer(runtime, hub).rpc_handler(),))
        health_reporter.add_to(server)
        server.add_insecure_port(f"unix:{socket}")
        await server.start()
        owned.claim()
        os.chmod(socket, settings.socket_mode)
        watch = WatchClient(
            runtime,
            WatchClientSettings(
                agent_id=settings.server_id,
                auth_servers=settings.auth_servers,
                backoff=settings.backoff,
                credentials=None if holder is None else holder.credentials,
            ),
        )
        tasks = [
            asyncio.create_task(watch.run_forever()),
            asyncio.create_task(runtime.tick_forever()),
            asyncio.create_task(runtime.saver.run_forever()),
            asyncio.create_task(hub.freshness_forever()),
            asyncio.create_task(_serving_after_first_sync(runtime, health_reporter)),
        ]
        if holder is not None:
            tasks.append(
                asyncio.create_task(
                    renew_forever(
                        holder, settings.auth_servers, settings.server_id, settings.data_dir
                    )
                )
            )
        _log.info(
            "agent started",
            server_id=settings.server_id,
            socket=str(socket),
            auth_servers=list(settings.auth_servers),
        )
        app = cls(settings, runtime, holder, health_reporter, server, tasks, hub)
        app._socket = owned
        return app

    async def stop(self) -> None:
        await self._health.set_serving(False)
        await cancel_and_wait(self._tasks)
        self.hub.close_all("the agent is shutting down")
        self.hub.flush_audit()
        await self.runtime.close()
        await self._server.stop(self.settings.shutdown_grace)
        if self._socket is not None:
            self._socket.remove()  # only the file this agent created
        _log.info("agent stopped")


async def _serving_after_first_sync(runtime: AgentRuntime, health_reporter: HealthReporter) -> None:
    await runtime.synced_once.wait()
    await health_reporter.set_serving(True)

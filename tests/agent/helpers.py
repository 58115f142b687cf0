"""Helpers of the agent suite: start auth servers and agents, open sessions, poll.

Everything is real: `AuthApp` on 127.0.0.1 with a SQLite (or memory) store,
`AgentApp` serving AgentService on a Unix socket, the public `AuthClient` and
`AgentClient`. Times are generous (a loaded 2-core machine must pass): tests poll for
what they expect instead of sleeping for fixed periods.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from lockd.agent.runtime import AgentRuntime
from lockd.auth.watch_stream import WatchSettings
from lockd.client import AgentClient, AgentStatus, AuthClient, Session
from lockd.domain.backoff import Backoff
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock, Store, SystemClock
from lockd.obs.audit import AuditEvent, MemoryAuditSink
from lockd.obs.metrics import AgentMetrics
from lockd.runtime.agent_app import AgentApp, AgentSettings
from lockd.runtime.auth_app import AuthApp, AuthServerSettings
from lockd.store import SqliteStore
from lockd.testing import MemoryStore
from tests.support import WAIT, eventually

CLUSTER = "test.lockd"
HEARTBEAT = timedelta(milliseconds=100)
FAST_BACKOFF = Backoff(base=0.05, cap=0.5)


def user_lock(name: str, user: str = "alice", message: str = "", **fields: str) -> Lock:
    return Lock(name, LockTarget(user=user, **fields), message=message)


async def terminated_within(session: Session, within: float = WAIT) -> tuple[str, str]:
    """(reason, lock_name) of the session's termination; fails if none comes in time."""
    async with asyncio.timeout(within):
        termination = await session.terminated()
    return termination.reason, termination.lock_name


@dataclass
class AuthHandle:
    app: AuthApp
    store: Store
    audit: MemoryAuditSink
    db: Path | None
    clients: list[AuthClient] = field(default_factory=list)
    stopped: bool = False

    @property
    def port(self) -> int:
        return self.app.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.app.port}"

    @property
    def revision(self) -> int:
        return self.app.hub.revision

    def client(self) -> AuthClient:
        """An admin client over TCP (closed when the server stops)."""
        client = AuthClient.connect(self.address)
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for client in self.clients:
            await client.close()
        self.clients.clear()
        await self.app.stop()


@dataclass
class AgentHandle:
    app: AgentApp
    audit: MemoryAuditSink
    registry: CollectorRegistry
    socket: Path
    data_dir: Path | None
    client: AgentClient
    sessions: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    stopped: bool = False

    @property
    def server_id(self) -> str:
        return self.app.settings.server_id

    async def open(self, identity: Identity, session_id: str = "") -> Session:
        """Register a session that stays open until the test (or the agent) ends it."""
        return await self.sessions.enter_async_context(
            self.client.open_session(identity, session_id)
        )

    async def status(self) -> AgentStatus:
        return await self.client.status()

    async def wait_state(self, state: str, within: float = WAIT) -> AgentStatus:
        async def probe() -> AgentStatus | None:
            status = await self.client.status()
            return status if status.state == state else None

        status: AgentStatus = await eventually(probe, within=within, what=f"agent {state}")
        return status

    async def wait_revision(self, revision: int, within: float = WAIT) -> AgentStatus:
        """Until the agent is SYNCED at `revision` or later."""

        async def probe() -> AgentStatus | None:
            status = await self.client.status()
            return status if status.state == "synced" and status.revision >= revision else None

        status: AgentStatus = await eventually(
            probe, within=within, what=f"agent synced at {revision}"
        )
        return status

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def wait_metric(self, name: str, value: float, **labels: str) -> None:
        """Until the metric reads `value` (the agent may count just after signalling)."""
        await eventually(
            lambda: self.metric(name, **labels) == value, what=f"{name}{labels} == {value}"
        )

    async def recorded(self, event: str, count: int = 1) -> list[AuditEvent]:
        """The audit events named `event`, once `count` of them were written (audit lines
        may follow the sidecar's signal by a moment); then exactly `count` must stay."""
        await eventually(lambda: len(self.audit.of(event)) >= count, what=f"{count} {event}")
        await asyncio.sleep(0.2)  # room for a duplicate to show up
        events = self.audit.of(event)
        assert len(events) == count, events
        return events

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await self.sessions.aclose()
        await self.app.stop()
        await self.client.close()


class Cluster:
    """Starts auth servers and agents; stops whatever still runs at teardown.

    Every server and agent it starts runs on `clock`: a test about expiry or staleness
    sets a `SteppedClock` there before starting them, and steps time instead of waiting."""

    def __init__(self, directory: Path, sockets: Path, clock: Clock | None = None) -> None:
        self.directory = directory
        self.sockets = sockets
        self.clock: Clock = SystemClock() if clock is None else clock
        self.auths: list[AuthHandle] = []
        self.agents: list[AgentHandle] = []

    @property
    def auth(self) -> AuthHandle:
        """The auth server started last."""
        return self.auths[-1]

    def db_path(self) -> Path:
        return self.directory / "lockd.db"

    async def start_auth(
        self,
        *,
        port: int = 0,
        db: Path | None = None,
        memory: bool = False,
        heartbeat: timedelta = HEARTBEAT,
        static_mode: LockingMode | None = None,
        retry_after: timedelta = timedelta(milliseconds=100),
    ) -> AuthHandle:
        """An auth server; `db=` an earlier server's file and `port=` its port restart it."""
        path = None if memory else (db or self.db_path())
        store: Store = MemoryStore() if path is None else SqliteStore(path)
        settings = AuthServerSettings(
            cluster_name=CLUSTER,
            listen_addr=f"127.0.0.1:{port}",
            static_locking_mode=static_mode,
            watch=WatchSettings(heartbeat_interval=heartbeat, retry_after=retry_after),
            shutdown_grace=1.0,
        )
        audit = MemoryAuditSink()
        app = await AuthApp.start(settings, store, self.clock, audit)
        handle = AuthHandle(app, store, audit, path)
        self.auths.append(handle)
        return handle

    async def start_agent(
        self,
        *,
        addresses: tuple[str, ...] | None = None,
        server_id: str = "node-1",
        max_staleness: timedelta = timedelta(minutes=1),
        data_dir: Path | None = None,
        persist: bool = True,
        socket_mode: int | None = None,
        name: str = "agent",
        wait_synced: bool = True,
        locking_floor: LockingMode = LockingMode.BEST_EFFORT,
        runtime_class: type[AgentRuntime] = AgentRuntime,
    ) -> AgentHandle:
        """An agent watching `addresses` (default: the last auth server)."""
        if addresses is None:
            addresses = (self.auth.address,)
        if persist and data_dir is None:
            data_dir = self.directory / name
        path = self.sockets / f"{name}-{len(self.agents)}.sock"
        settings = AgentSettings(
            cluster_name=CLUSTER,
            server_id=server_id,
            auth_servers=addresses,
            socket=path,
            max_staleness=max_staleness,
            locking_floor=locking_floor,
            data_dir=data_dir if persist else None,
            backoff=FAST_BACKOFF,
            shutdown_grace=0.5,
        )
        if socket_mode is not None:
            settings = dataclasses.replace(settings, socket_mode=socket_mode)
        audit = MemoryAuditSink()
        registry = CollectorRegistry()
        app = await AgentApp.start(
            settings, self.clock, audit, AgentMetrics(registry), runtime_class=runtime_class
        )
        handle = AgentHandle(app, audit, registry, path, data_dir, AgentClient.connect(path))
        self.agents.append(handle)
        if wait_synced:
            await handle.wait_revision(self.auth.revision if self.auths else 0)
        return handle

    async def close(self) -> None:
        for agent in reversed(self.agents):
            await agent.stop()
        for auth in reversed(self.auths):
            await auth.stop()

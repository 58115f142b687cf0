"""One real node agent and the sidecars and checkers that talk to its Unix socket.

`AgentHost` builds the agent exactly as `lockd agent` does (`lockd.runtime.builders.start_agent`
from a parsed config: AgentService on a Unix socket, view persisted in its data dir,
JSON-lines audit file, warnings-only logs) and only swaps in `HostRuntime`, the real
runtime that also reports when each event batch arrived and was applied.

`Sidecars` holds S sessions open over the socket (`AgentClient.open_session`), X of
them for the user the scenario's lock targets, and reports when each termination
signal arrived. `Checker` drives CheckAccess with C calls in flight, against the agent
or the bare unary server, with the same pre-serialised request either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from lockd.agent.runtime import AgentRuntime
from lockd.bench.bare import CHECK_ACCESS, VICTIM
from lockd.bench.wire import ChildWire, Message
from lockd.client import AgentClient
from lockd.config import audit_path, parse_config
from lockd.domain.events import Event
from lockd.domain.identity import Identity
from lockd.domain.ports import SystemClock
from lockd.domain.resources import ReplicatedResource
from lockd.obs.audit import open_audit_sink
from lockd.runtime.agent_app import AgentApp
from lockd.runtime.builders import start_agent
from lockd.v1 import agent_service_pb2 as agent_pb
from lockd.wire import convert

SESSIONS_PER_CHANNEL = 500
OPEN_CONCURRENCY = 200


class HostRuntime(AgentRuntime):
    """The real runtime; reports each batch's arrival and application over the wire."""

    def on_events(self, epoch: str, first: int, last: int, events: Sequence[Event]) -> None:
        arrived = time.monotonic()
        super().on_events(epoch, first, last, events)
        ChildWire.emit("events", first=first, last=last, arrived=arrived, done=time.monotonic())

    def on_snapshot(
        self, epoch: str, revision: int, resources: Sequence[ReplicatedResource]
    ) -> None:
        super().on_snapshot(epoch, revision, resources)
        ChildWire.emit("snapshot", revision=revision, count=len(resources), at=time.monotonic())


class AgentHost:
    """`lockd agent` in this process, with a timed runtime."""

    def __init__(self, address: str, directory: Path) -> None:
        socket = directory / "agent.sock"
        self.socket = socket
        config = parse_config(
            {
                "cluster_name": "bench.lockd",
                "data_dir": str(directory),
                "log": {"format": "json", "level": "warning"},
                "audit": {"sink": str(directory / "audit.log")},
                "agent_service": {
                    "enabled": True,
                    "server_id": "bench-host",
                    "auth_servers": [address],
                    "socket": str(socket),
                    "metrics_addr": "",
                    "insecure": True,
                },
            },
            env={},
        )
        self._config = config
        self._sink = open_audit_sink(audit_path(config) or config.audit.sink)
        self._app: AgentApp | None = None

    @property
    def app(self) -> AgentApp:
        assert self._app is not None, "the agent host has not started"
        return self._app

    async def start(self) -> None:
        self._app = await start_agent(
            self._config, SystemClock(), self._sink, CollectorRegistry(), None, HostRuntime
        )

    async def handle(self, command: Message) -> Message:
        if command["cmd"] == "status":
            view = self.app.runtime.view
            return {
                "revision": view.state.revision,
                "locks": len(view.state.locks),
                "sessions": view.session_count,
                "state": self.app.runtime.sync_state().value,
            }
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        await self.app.stop()
        self._sink.close()


class Sidecars:
    """S sessions held open over the agent's socket; X of them for the victim user."""

    def __init__(self, socket: Path, sessions: int, matching: int, prefix: str) -> None:
        self.socket = socket
        self.sessions = sessions
        self.matching = matching
        self.prefix = prefix
        self._clients: list[AgentClient] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._opened = 0
        self._terminated: list[float] = []
        self._stray = 0
        self._gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    def _client(self, index: int) -> AgentClient:
        slot = index // SESSIONS_PER_CHANNEL
        while len(self._clients) <= slot:
            options = [("grpc.use_local_subchannel_pool", 1)]
            channel = grpc.aio.insecure_channel(f"unix:{self.socket}", options=options)
            self._clients.append(AgentClient(channel))
        return self._clients[slot]

    def _identity(self, index: int) -> Identity:
        user = VICTIM if index < self.matching else f"{self.prefix}-user-{index}"
        return Identity(user=user, roles=("dev",), login="root")

    async def _hold(self, index: int, opened: asyncio.Future[None]) -> None:
        client = self._client(index)
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with self._gate:
                    session = await stack.enter_async_context(
                        client.open_session(self._identity(index))
                    )
                self._opened += 1
                opened.set_result(None)
                await session.terminated()
                at = time.monotonic()
        except BaseException as error:
            if not opened.done():
                opened.set_exception(error)
            raise
        if index < self.matching:
            self._terminated.append(at)
            if len(self._terminated) == self.matching:
                ChildWire.emit("terminated", times=self._terminated)
        else:
            self._stray += 1

    async def _open(self, indexes: Sequence[int]) -> None:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for index in indexes:
            opened: asyncio.Future[None] = loop.create_future()
            futures.append(opened)
            self._tasks.append(asyncio.create_task(self._hold(index, opened)))
        await asyncio.gather(*futures)

    async def handle(self, command: Message) -> Message:
        name = command["cmd"]
        if name == "open":
            await self._open(range(self.sessions))
            return {"opened": self._opened}
        if name == "reopen":
            self._terminated = []
            self._tasks = [task for task in self._tasks if not task.done()]
            await self._open(range(self.matching))
            return {"opened": len(self._tasks), "stray": self._stray}
        raise ValueError(f"unknown command {name!r}")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients:
            await client.channel.close()


def check_request() -> bytes:
    """An allowed identity's CheckAccess request, serialised once."""
    identity = Identity(user="checker", roles=("dev",), login="root")
    return agent_pb.CheckAccessRequest(
        identity=convert.identity_to_pb(identity)
    ).SerializeToString()


class Checker:
    """C CheckAccess calls in flight over one Unix-socket channel, for a while."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._request = check_request()

    async def run(self, socket: str, seconds: float, warmup: float) -> Message:
        latencies: list[int] = []
        async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
            method: Any = channel.unary_unary(CHECK_ACCESS)
            start = time.monotonic()
            measure_from = start + warmup
            stop_at = measure_from + seconds

            async def loop() -> None:
                request = self._request
                while True:
                    sent = time.monotonic()
                    if sent >= stop_at:
                        return
                    await method(request)
                    if sent >= measure_from:
                        latencies.append(int((time.monotonic() - sent) * 1e6))

            await asyncio.gather(*(loop() for _ in range(self.concurrency)))
        return {"calls": len(latencies), "seconds": seconds, "latencies_us": latencies}

    async def handle(self, command: Message) -> Message:
        if command["cmd"] == "run":
            return await self.run(
                str(command["socket"]), float(command["seconds"]), float(command["warmup"])
            )
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        pass

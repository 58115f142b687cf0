"""One real node agent and the sidecars and checkers that talk to its Unix socket.

`AgentHost` builds the agent exactly as `lockd agent` does (`lockd.runtime.builders.start_agent`
from a parsed config: AgentService on a Unix socket, view persisted in its data dir,
JSON-lines audit file, warnings-only logs) and only swaps in `HostRuntime`, the real
runtime that also reports when each event batch arrived and was applied.

`Sidecars` is one sidecar process holding S sessions on its one SessionChannel
(`AgentClient.open_sessions`), X of them for the user the scenario's lock targets, and
reports when each termination arrived. `Checker` drives CheckAccess with C calls in
flight, against the agent or the bare unary server, with the same pre-serialised request
either way; or, with the agent's view streamed to it, decides locally in a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from lockd.agent.runtime import AgentRuntime
from lockd.bench.bare import CHECK_ACCESS, VICTIM
from lockd.bench.wire import ChildWire, Message
from lockd.client import (
    AgentClient,
    Session,
    SessionMetadata,
    SessionProtocol,
    SessionRequest,
    SessionTermination,
)
from lockd.config import audit_path, parse_config
from lockd.domain.events import Event
from lockd.domain.identity import Identity
from lockd.domain.ports import SystemClock
from lockd.obs.audit_writer import open_audit_sink
from lockd.runtime.agent_app import AgentApp
from lockd.runtime.builders import start_agent
from lockd.v1 import agent_service_pb2 as agent_pb
from lockd.wire import convert


class HostRuntime(AgentRuntime):
    """The real runtime; reports each batch's arrival and application over the wire."""

    def on_events(self, epoch: str, first: int, last: int, events: Sequence[Event]) -> None:
        arrived = time.monotonic()
        super().on_events(epoch, first, last, events)
        ChildWire.emit("events", first=first, last=last, arrived=arrived, done=time.monotonic())

    def on_snapshot_end(self, epoch: str, revision: int, count: int) -> None:
        super().on_snapshot_end(epoch, revision, count)
        ChildWire.emit("snapshot", revision=revision, count=count, at=time.monotonic())


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
    """One sidecar process: S sessions on ONE channel (one `AgentClient`), X of them for
    the victim user, registered in batches; reports when each termination arrived."""

    def __init__(self, socket: Path, sessions: int, matching: int, prefix: str) -> None:
        self.sessions = sessions
        self.matching = matching
        self.prefix = prefix
        self._client = AgentClient.connect(socket, sidecar=f"bench-{prefix}")
        self._live: list[Session] = []
        self._terminated: list[float] = []
        self._stray = 0
        self._round = 0

    def _request(self, index: int) -> SessionRequest:
        user = VICTIM if index < self.matching else f"{self.prefix}-user-{index}"
        metadata = SessionMetadata(SessionProtocol.SSH, "127.0.0.1:2222", "bench")
        session_id = f"{self.prefix}-{self._round}-{index}"
        return SessionRequest(
            Identity(user=user, roles=("dev",), login="root"), metadata, session_id
        )

    def _ended(self, victim: bool) -> Callable[[SessionTermination], None]:
        def record(termination: SessionTermination) -> None:
            if not victim:
                self._stray += 1
                return
            self._terminated.append(time.monotonic())
            if len(self._terminated) == self.matching:
                ChildWire.emit("terminated", times=self._terminated)

        return record

    async def _open(self, count: int) -> float:
        """Register sessions 0..count-1 (victims first); seconds it took."""
        started = time.monotonic()
        sessions = await self._client.open_sessions([self._request(i) for i in range(count)])
        took = time.monotonic() - started
        for index, session in enumerate(sessions):
            if not session.decision.allowed:
                raise RuntimeError(f"session refused: {session.decision.reason}")
            session.on_terminated(self._ended(index < self.matching))
        self._live += sessions
        return took

    async def handle(self, command: Message) -> Message:
        name = command["cmd"]
        if name == "open":
            took = await self._open(self.sessions)
            return {"opened": len(self._live), "register_s": took}
        if name == "reopen":
            self._terminated = []
            self._round += 1
            self._live = [session for session in self._live if not session.is_terminated()]
            await self._open(self.matching)
            return {"opened": len(self._live), "stray": self._stray}
        raise ValueError(f"unknown command {name!r}")

    async def stop(self) -> None:
        await self._client.close()


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

    async def local(self, socket: str, seconds: float, locks: int) -> Message:
        """`check_access_local` in a loop on the view the agent streamed here."""
        identity = Identity(user="checker", roles=("dev",), login="root")
        async with AgentClient.connect(socket, local_view=True) as client:
            started = time.monotonic()
            while True:
                copy = client.sessions.copy
                if copy is not None and copy.ready() and len(copy.state.locks) >= locks:
                    break
                if time.monotonic() - started > 120 + locks / 1000:
                    raise RuntimeError("the local copy of the view did not load")
                await asyncio.sleep(0.05)
            loaded_s = time.monotonic() - started
            check = client.check_access_local
            count = 0
            begin = time.perf_counter()
            deadline = begin + seconds
            while (now := time.perf_counter()) < deadline:
                for _ in range(1000):
                    check(identity)
                count += 1000
        return {"checks_per_s": round(count / (now - begin), 1), "loaded_s": round(loaded_s, 2)}

    async def handle(self, command: Message) -> Message:
        if command["cmd"] == "run":
            return await self.run(
                str(command["socket"]), float(command["seconds"]), float(command["warmup"])
            )
        if command["cmd"] == "local":
            return await self.local(
                str(command["socket"]), float(command["seconds"]), int(command["locks"])
            )
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        pass

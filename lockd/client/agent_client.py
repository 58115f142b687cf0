"""`AgentClient`: sidecars register sessions with their node agent and learn of terminations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc

from lockd.client.auth_client import AGENT_STATE_NAMES
from lockd.client.calls import ChannelClient, call, channel_target
from lockd.domain.errors import AccessDeniedError, LockdError, UnavailableError
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.v1 import agent_service_pb2 as agent_pb
from lockd.v1 import agent_service_pb2_grpc as agent_grpc
from lockd.wire import convert
from lockd.wire.status_table import error_for


@dataclass(frozen=True, slots=True)
class AccessDecision:
    allowed: bool
    reason: str
    lock_name: str
    mode: LockingMode


@dataclass(frozen=True, slots=True)
class SessionTermination:
    """Why the agent ended a session: the SPEC §3 text and the lock's name (if any)."""

    reason: str
    lock_name: str


@dataclass(frozen=True, slots=True)
class AgentStatus:
    server_id: str
    state: str
    epoch: str
    revision: int
    freshness_age: timedelta
    locks_in_force: int
    sessions: int
    cluster_locking_mode: LockingMode | None


class SessionDenied(AccessDeniedError):
    """The agent refused to register the session; the message is SPEC §3's."""

    def __init__(self, decision: AccessDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def _decision(message: agent_pb.Decision) -> AccessDecision:
    return AccessDecision(
        allowed=message.allowed,
        reason=message.reason,
        lock_name=message.lock_name,
        mode=convert.MODE_FROM_PB.get(message.mode) or LockingMode.BEST_EFFORT,
    )


class Session:
    """A live session registered with the agent; ends when the `async with` block exits.

    `await session.terminated()` returns once the agent signals termination; iterate
    (`async for termination in session`) or register `on_terminated(callback)` instead.
    """

    def __init__(self, call: Any, session_id: str, decision: AccessDecision) -> None:
        self._call = call
        self.session_id = session_id
        self.decision = decision
        self._signal: asyncio.Task[SessionTermination] = asyncio.create_task(self._wait())

    async def _wait(self) -> SessionTermination:
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise error_for(error.code(), error.details() or "") from None
        if response is grpc.aio.EOF or response.WhichOneof("message") != "terminated":
            raise UnavailableError("the agent ended the session stream without a signal")
        return SessionTermination(response.terminated.reason, response.terminated.lock_name)

    async def terminated(self) -> SessionTermination:
        """Wait for the termination signal (raises UnavailableError if the agent goes)."""
        return await asyncio.shield(self._signal)

    def is_terminated(self) -> bool:
        return self._signal.done() and not self._signal.cancelled() and not self._signal.exception()

    def on_terminated(self, callback: Callable[[SessionTermination], None]) -> None:
        """Call `callback` with the termination when it arrives."""

        def deliver(task: asyncio.Task[SessionTermination]) -> None:
            if not task.cancelled() and task.exception() is None:
                callback(task.result())

        self._signal.add_done_callback(deliver)

    async def __aiter__(self) -> AsyncIterator[SessionTermination]:
        yield await self.terminated()

    async def close(self) -> None:
        """End the session on the agent (the sidecar's session is over)."""
        self._call.cancel()
        self._signal.cancel()
        with contextlib.suppress(asyncio.CancelledError, LockdError):
            await self._signal


class AgentClient(ChannelClient):
    """Client of the node agent's Unix socket, for sidecars.

    async with AgentClient.connect("/var/lib/lockd/agent.sock") as agent:
        async with agent.open_session(Identity(user="alice", login="root")) as session:
            termination = await session.terminated()
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self._stub = agent_grpc.AgentServiceStub(channel)

    @classmethod
    def connect(cls, socket: str | Path) -> AgentClient:
        return cls(grpc.aio.insecure_channel(channel_target(str(socket))))

    @contextlib.asynccontextmanager
    async def open_session(
        self, identity: Identity, session_id: str = ""
    ) -> AsyncIterator[Session]:
        """Register a session; raises SessionDenied when a lock (or strict mode) refuses it."""
        request = agent_pb.OpenSessionRequest(
            identity=convert.identity_to_pb(identity), session_id=session_id
        )
        call = self._stub.OpenSession(request)
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as error:
            raise error_for(error.code(), error.details() or "") from None
        if not isinstance(first, agent_pb.OpenSessionResponse) or not first.HasField("opened"):
            call.cancel()
            raise UnavailableError("the agent did not answer the session registration")
        decision = _decision(first.opened.decision)
        if not decision.allowed:
            call.cancel()
            raise SessionDenied(decision)
        session = Session(call, first.opened.session_id, decision)
        try:
            yield session
        finally:
            await session.close()

    async def check_access(self, identity: Identity) -> AccessDecision:
        request = agent_pb.CheckAccessRequest(identity=convert.identity_to_pb(identity))
        response = await call(self._stub.CheckAccess(request))
        return _decision(response.decision)

    async def status(self) -> AgentStatus:
        response = await call(self._stub.GetStatus(agent_pb.GetStatusRequest()))
        return AgentStatus(
            server_id=response.server_id,
            state=AGENT_STATE_NAMES.get(response.state, "unknown"),
            epoch=response.epoch,
            revision=response.revision,
            freshness_age=convert.duration_from_pb(response.freshness_age),
            locks_in_force=response.locks_in_force,
            sessions=response.sessions,
            cluster_locking_mode=convert.MODE_FROM_PB.get(response.cluster_locking_mode),
        )

"""`AgentClient`: sidecars register sessions with their node agent and learn of terminations.

Every session of one `AgentClient` travels on one multiplexed SessionChannel stream
(`lockd.client.session_channel`), opened on first use and kept alive. With
`local_view=True` the agent also streams its view, and `check_access` decides in this
process (docs/sidecar-api.md says what such a decision guarantees).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc

from lockd.client.calls import ChannelClient, call, channel_target
from lockd.client.session_channel import ChannelSettings, SessionChannel, clock_now
from lockd.client.session_handle import Session, SessionDenied, SessionRequest
from lockd.domain.backoff import Backoff
from lockd.domain.errors import UnavailableError
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.domain.sessions import SessionMetadata
from lockd.domain.view import Decision
from lockd.v1 import agent_service_pb2 as agent_pb
from lockd.v1 import agent_service_pb2_grpc as agent_grpc
from lockd.wire import convert
from lockd.wire.session_convert import decision_from_pb

__all__ = [
    "AccessDecision",
    "AgentClient",
    "AgentStatus",
    "Session",
    "SessionDenied",
    "SessionRequest",
]

# A decision as the agent (or the local copy of its view) made it.
AccessDecision = Decision


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
    channels: int = 0


class AgentClient(ChannelClient):
    """Client of the node agent's Unix socket, for sidecars.

    async with AgentClient.connect("/var/lib/lockd/agent.sock") as agent:
        async with agent.open_session(Identity(user="alice", login="root")) as session:
            termination = await session.terminated()
    """

    def __init__(self, channel: grpc.aio.Channel, settings: ChannelSettings | None = None) -> None:
        super().__init__(channel)
        self._stub = agent_grpc.AgentServiceStub(channel)
        self.sessions = SessionChannel(channel, settings or ChannelSettings())

    @classmethod
    def connect(
        cls,
        socket: str | Path,
        *,
        sidecar: str = "",
        local_view: bool = False,
        connect_timeout: float = 5.0,
        backoff: Backoff | None = None,
    ) -> AgentClient:
        """A client of the agent at `socket`; `sidecar` names it in the agent's audit."""
        settings = ChannelSettings(
            sidecar=sidecar,
            want_view=local_view,
            connect_timeout=connect_timeout,
            backoff=backoff or ChannelSettings().backoff,
        )
        client = cls(grpc.aio.insecure_channel(channel_target(str(socket))), settings)
        if local_view:
            client.sessions.start()  # at once, so the copy loads while the sidecar starts
        return client

    async def close(self) -> None:
        await self.sessions.close()
        await super().close()

    @contextlib.asynccontextmanager
    async def open_session(
        self,
        identity: Identity,
        session_id: str = "",
        metadata: SessionMetadata | None = None,
    ) -> AsyncIterator[Session]:
        """Register a session; raises SessionDenied when a lock (or strict mode) refuses it,
        UnavailableError when the agent cannot be reached within `connect_timeout`."""
        request = SessionRequest(identity, metadata or SessionMetadata(), session_id)
        (session,) = await self.sessions.register([request])
        if not session.decision.allowed:
            raise SessionDenied(session.decision)
        try:
            yield session
        finally:
            await session.close()

    async def open_sessions(self, requests: Sequence[SessionRequest]) -> list[Session]:
        """Register many sessions at once; refused ones have `decision.allowed` False
        (they are not registered). Close them with `close_sessions` or `Session.close`."""
        return await self.sessions.register(requests)

    async def close_sessions(self, sessions: Sequence[Session]) -> None:
        """Unregister sessions (one message per batch)."""
        self.sessions.unregister(sessions)

    async def check_access(self, identity: Identity) -> AccessDecision:
        """Decide a new request: in-process on the local copy of the view when there is
        one (`local_view=True`, loaded), otherwise by asking the agent (CheckAccess)."""
        copy = self.sessions.copy
        if copy is not None and copy.ready():
            return self.check_access_local(identity)
        request = agent_pb.CheckAccessRequest(identity=convert.identity_to_pb(identity))
        response = await call(self._stub.CheckAccess(request))
        return decision_from_pb(response.decision)

    def check_access_local(self, identity: Identity) -> AccessDecision:
        """Decide in this process on the copy of the agent's view (`local_view=True`).

        Raises UnavailableError until the copy is loaded and vouched for by the agent.
        """
        copy = self.sessions.copy
        if copy is None or not copy.ready():
            raise UnavailableError("no local copy of the agent's view yet")
        now, wall = clock_now()
        return copy.decide(identity, now, wall)

    async def status(self) -> AgentStatus:
        response = await call(self._stub.GetStatus(agent_pb.GetStatusRequest()))
        return AgentStatus(
            server_id=response.server_id,
            state=convert.AGENT_STATE_NAMES.get(response.state, "unknown"),
            epoch=response.epoch,
            revision=response.revision,
            freshness_age=convert.duration_from_pb(response.freshness_age),
            locks_in_force=response.locks_in_force,
            sessions=response.sessions,
            cluster_locking_mode=convert.MODE_FROM_PB.get(response.cluster_locking_mode),
            channels=response.channels,
        )

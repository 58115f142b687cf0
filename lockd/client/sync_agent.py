"""A thread-based facade of `AgentClient` for sidecars that are not asyncio programs.

`SyncAgentClient` runs an event loop in a daemon thread and the async client on it; its
methods block the calling thread until the loop answers. Callbacks given to
`SyncSession.on_terminated` run on that loop thread: keep them short (set an event,
signal a process).

    with SyncAgentClient.connect("/var/lib/lockd/agent.sock", sidecar="ssh") as agent:
        with agent.open_session(Identity(user="alice", login="root")) as session:
            termination = session.wait_terminated()
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from lockd.client.agent_client import AccessDecision, AgentClient, AgentStatus
from lockd.client.session_handle import (
    Session,
    SessionDenied,
    SessionRequest,
    SessionTermination,
)
from lockd.domain.identity import Identity
from lockd.domain.sessions import SessionMetadata

T = TypeVar("T")


class _ClosedOnExit(ABC):
    """`with` calls `close()` at the end of the block."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class SyncSession(_ClosedOnExit):
    """A registered session, seen from a thread. `with` unregisters it at the end."""

    def __init__(self, client: SyncAgentClient, session: Session) -> None:
        self._client = client
        self._session = session
        self.session_id = session.session_id
        self.decision = session.decision
        self._ended = threading.Event()
        self._termination: SessionTermination | None = None
        client.call_soon(lambda: session.on_terminated(self._arrived))

    def _arrived(self, termination: SessionTermination) -> None:
        self._termination = termination
        self._ended.set()

    def wait_terminated(self, timeout: float | None = None) -> SessionTermination | None:
        """Block until the session is terminated; None if `timeout` passed first."""
        self._ended.wait(timeout)
        return self._termination

    def is_terminated(self) -> bool:
        return self._ended.is_set()

    def on_terminated(self, callback: Callable[[SessionTermination], None]) -> None:
        """Call `callback` (on the client's loop thread) with the termination."""
        self._client.call_soon(lambda: self._session.on_terminated(callback))

    def close(self) -> None:
        self._client.run(self._session.close())


class SyncAgentClient(_ClosedOnExit):
    """`AgentClient` behind blocking calls (see the module docstring)."""

    def __init__(self, socket: str | Path, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lockd-agent-client", daemon=True
        )
        self._thread.start()
        self._client: AgentClient = self.run(self._connect(socket, options))

    @classmethod
    def connect(cls, socket: str | Path, **options: Any) -> SyncAgentClient:
        """Options as `AgentClient.connect` (sidecar, local_view, connect_timeout, backoff)."""
        return cls(socket, **options)

    @staticmethod
    async def _connect(socket: str | Path, options: dict[str, Any]) -> AgentClient:
        return AgentClient.connect(socket, **options)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coroutine` on the client's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call_soon(self, callback: Callable[[], object]) -> None:
        self._loop.call_soon_threadsafe(callback)

    def open_session(
        self, identity: Identity, session_id: str = "", metadata: SessionMetadata | None = None
    ) -> SyncSession:
        """Register a session; raises SessionDenied when refused (use it with `with`)."""
        (session,) = self.open_sessions(
            [SessionRequest(identity, metadata or SessionMetadata(), session_id)]
        )
        if not session.decision.allowed:
            raise SessionDenied(session.decision)
        return session

    def open_sessions(self, requests: Sequence[SessionRequest]) -> list[SyncSession]:
        sessions = self.run(self._client.open_sessions(requests))
        return [SyncSession(self, session) for session in sessions]

    def check_access(self, identity: Identity) -> AccessDecision:
        return self.run(self._client.check_access(identity))

    def status(self) -> AgentStatus:
        return self.run(self._client.status())

    def close(self) -> None:
        if not self._loop.is_closed():
            self.run(self._client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

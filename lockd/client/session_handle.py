"""What a sidecar holds for each session: `Session`, its termination and its refusal.

Sessions live on a `SessionChannel` (`lockd.client.session_channel`), which resolves
them; this module is what callers of `AgentClient.open_session(s)` see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lockd.domain.errors import AccessDeniedError
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.domain.sessions import SessionMetadata
from lockd.domain.view import Decision

if TYPE_CHECKING:
    from lockd.client.session_channel import SessionChannel


@dataclass(frozen=True, slots=True)
class SessionTermination:
    """Why a session ended: the SPEC §3 text, the lock's name (if any) and the cause:
    `lock`, `server_lock`, `strict_stale` (from the agent) or `agent_unavailable` (the
    agent went away and the session is strict)."""

    reason: str
    lock_name: str
    cause: str = "lock"


class SessionDenied(AccessDeniedError):
    """The agent refused to register the session; the message is SPEC §3's."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


@dataclass(frozen=True, slots=True)
class SessionRequest:
    """One session of a batch registration; an empty id gets a random one."""

    identity: Identity
    metadata: SessionMetadata = field(default_factory=SessionMetadata)
    session_id: str = ""


class Session:
    """A session registered on the channel (or refused: see `decision.allowed`).

    `await session.terminated()` returns once the agent ends it; `on_terminated(callback)`
    and `async for termination in session` are alternatives. `close()` unregisters it.
    """

    def __init__(
        self,
        channel: SessionChannel,
        session_id: str,
        identity: Identity,
        metadata: SessionMetadata,
    ) -> None:
        self._channel = channel
        self.session_id = session_id
        self.identity = identity
        self.metadata = metadata
        loop = asyncio.get_running_loop()
        self.decision: Decision = Decision(False, LockingMode.BEST_EFFORT, "not registered yet")
        self._decided: asyncio.Future[Decision] = loop.create_future()
        self._ended: asyncio.Future[SessionTermination] = loop.create_future()

    @property
    def strict(self) -> bool:
        return self.decision.mode is LockingMode.STRICT

    async def terminated(self) -> SessionTermination:
        """Wait until the agent (or the loss of a strict session's agent) ends it."""
        return await asyncio.shield(self._ended)

    def is_terminated(self) -> bool:
        return self._ended.done() and not self._ended.cancelled()

    def on_terminated(self, callback: Callable[[SessionTermination], None]) -> None:
        """Call `callback` with the termination when it arrives."""

        def deliver(future: asyncio.Future[SessionTermination]) -> None:
            if not future.cancelled():
                callback(future.result())

        self._ended.add_done_callback(deliver)

    async def __aiter__(self) -> AsyncIterator[SessionTermination]:
        yield await self.terminated()

    async def close(self) -> None:
        """End the session on the agent (the sidecar's session is over)."""
        self._channel.unregister([self])

    def _end(self, termination: SessionTermination) -> None:
        if not self._ended.done():
            self._ended.set_result(termination)

    def _forget(self) -> None:
        if not self._ended.done():
            self._ended.cancel()
        if not self._decided.done():
            self._decided.cancel()

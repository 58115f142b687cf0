"""What a sidecar holds for each session: `Session`, its termination and its refusal.

Sessions live on a `SessionChannel` (`lockd.client.session_channel`), which resolves
them; this module is what callers of `AgentClient.open_session(s)` see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from lockd.domain.errors import AccessDeniedError
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.domain.sessions import SessionMetadata
from lockd.domain.view import Decision

if TYPE_CHECKING:
    from lockd.client.session_channel import SessionChannel

_log = structlog.get_logger("lockd.client.sidecar")
NOT_REGISTERED = Decision(False, LockingMode.BEST_EFFORT, "not registered yet")


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


class Registering:
    """The sessions of one `register` call waiting for their decisions: one future for
    the whole call, not one per session."""

    __slots__ = ("done", "remaining")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not count:
            self.done.set_result(None)

    def decided(self) -> None:
        self.remaining -= 1
        if not self.remaining and not self.done.done():
            self.done.set_result(None)

    def fail(self, error: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(error)


class Session:
    """A session registered on the channel (or refused: see `decision.allowed`).

    `await session.terminated()` returns once the agent ends it; `on_terminated(callback)`
    and `async for termination in session` are alternatives. `close()` unregisters it.
    A session holds no future of its own until one is awaited (thousands of sessions
    per channel), and `on_terminated` callbacks run as the termination is read.
    """

    __slots__ = (
        "_callbacks",
        "_channel",
        "_ended",
        "_forgotten",
        "_termination",
        "decision",
        "identity",
        "metadata",
        "registering",
        "session_id",
    )

    def __init__(
        self,
        channel: SessionChannel,
        session_id: str,
        identity: Identity,
        metadata: SessionMetadata,
        registering: Registering | None = None,
    ) -> None:
        self._channel = channel
        self.session_id = session_id
        self.identity = identity
        self.metadata = metadata
        self.decision: Decision = NOT_REGISTERED
        # The call waiting for the first decision; None once decided.
        self.registering = registering
        self._termination: SessionTermination | None = None
        self._ended: asyncio.Future[SessionTermination] | None = None
        self._callbacks: list[Callable[[SessionTermination], None]] = []
        self._forgotten = False

    @property
    def strict(self) -> bool:
        return self.decision.mode is LockingMode.STRICT

    async def terminated(self) -> SessionTermination:
        """Wait until the agent (or the loss of a strict session's agent) ends it."""
        if self._termination is not None:
            return self._termination
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
            if self._forgotten:
                self._ended.cancel()
        return await asyncio.shield(self._ended)

    def is_terminated(self) -> bool:
        return self._termination is not None

    def on_terminated(self, callback: Callable[[SessionTermination], None]) -> None:
        """Call `callback` with the termination when it arrives (at once, from the event
        loop, if it already has)."""
        if self._termination is not None:
            asyncio.get_running_loop().call_soon(callback, self._termination)
        elif not self._forgotten:
            self._callbacks.append(callback)

    async def __aiter__(self) -> AsyncIterator[SessionTermination]:
        yield await self.terminated()

    async def close(self) -> None:
        """End the session on the agent (the sidecar's session is over)."""
        self._channel.unregister([self])

    def _end(self, termination: SessionTermination) -> None:
        if self._termination is not None or self._forgotten:
            return
        self._termination = termination
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(termination)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(termination)
            except Exception as error:  # one callback must not stop the channel's reader
                # No traceback: formatting one reads source files, on the event loop.
                _log.error(
                    "an on_terminated callback failed", session=self.session_id, error=repr(error)
                )

    def _forget(self) -> None:
        """Unregistered or the client closed: nothing will end it any more."""
        self._forgotten = True
        self._callbacks.clear()
        if self._ended is not None and not self._ended.done():
            self._ended.cancel()

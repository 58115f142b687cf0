"""One sidecar's channel as the agent sees it: who it is and what is queued for it.

Two FIFO queues per channel. Session messages (registration results, terminations) go
first; view frames (snapshot, events, freshness) after them, so a termination is never
stuck behind a large snapshot, and a sidecar whose copy reached revision R has already
received every termination of the events up to R. What waits for a sidecar is bounded:
a sidecar that stops reading has its channel ended (slow consumer, `MAX_QUEUED_BYTES`)
instead of growing the agent's memory, one that reads its view slowly gets a new
snapshot instead (`MAX_VIEW_BYTES`); every channel has its own queues and writer, so
neither delays another sidecar. Frames are bytes from a
`SidecarEncoder` (the wire format is the adapter's business: `lockd.api.session_channel_servicer`).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from lockd.domain.errors import LockdError, UnavailableError
from lockd.domain.events import Event
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ReplicatedResource
from lockd.domain.sessions import SessionMetadata
from lockd.domain.view import Decision, SyncState, TerminationCause

# A sidecar that stops reading. Beyond what gRPC holds in the stream's flow-control
# window (a few MiB), at most this much of session messages (answers, terminations) may
# wait for it before the agent ends its channel as a slow consumer; each queued message
# counts FRAME_OVERHEAD more than its size, so many tiny ones count too. A reading
# sidecar drains its channel within milliseconds. Counted, not timed: load cannot trip it.
MAX_QUEUED_BYTES = 16 << 20
FRAME_OVERHEAD = 100
# View frames waiting beyond this are replaced by one snapshot of the current view: a
# sidecar that reads its copy of the view slowly starts it over instead of losing its
# sessions (a snapshot is the view's own immutable resources, shared, not a copy).
MAX_VIEW_BYTES = 8 << 20
SNAPSHOT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Registration:
    session_id: str
    identity: Identity
    metadata: SessionMetadata
    # Set when the request could not even be read (e.g. an unknown protocol value).
    error: str = ""


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    session_id: str
    decision: Decision | None
    error: str = ""


class SidecarEncoder(Protocol):
    """Encodes the agent's channel messages (the wire format is the adapter's business)."""

    def welcome(self, server_id: str, channel_id: str, locking_floor: LockingMode) -> bytes: ...

    def registered(
        self, request_id: int, revision: int, results: Sequence[RegistrationResult]
    ) -> bytes: ...

    def terminated(
        self,
        session_ids: Sequence[str],
        reason: str,
        lock_name: str,
        cause: TerminationCause,
        revision: int,
    ) -> bytes: ...

    def events(self, epoch: str, events: Sequence[Event]) -> bytes: ...

    def snapshot_begin(self, epoch: str, revision: int, count: int) -> bytes: ...

    def snapshot_chunk(self, resources: Sequence[ReplicatedResource]) -> bytes: ...

    def snapshot_end(self, epoch: str, revision: int, count: int) -> bytes: ...

    def freshness(self, state: SyncState, revision: int, reliable_for: float) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ViewSnapshot:
    """A view snapshot to send: the resources were copied when it was queued (they are
    immutable), and are encoded chunk by chunk while being written."""

    epoch: str
    revision: int
    resources: list[ReplicatedResource]

    def frames(self, encoder: SidecarEncoder) -> Iterator[bytes]:
        count = len(self.resources)
        yield encoder.snapshot_begin(self.epoch, self.revision, count)
        for start in range(0, count, SNAPSHOT_CHUNK):
            yield encoder.snapshot_chunk(self.resources[start : start + SNAPSHOT_CHUNK])
        yield encoder.snapshot_end(self.epoch, self.revision, count)


class EndReason(enum.Enum):
    """Why a channel ended (the `reason` label of lockd_agent_sidecar_channels_ended)."""

    CLOSED = "closed"  # the sidecar half-closed the stream
    GONE = "gone"  # the stream broke (the sidecar process died or cancelled)
    INVALID = "invalid"  # the sidecar sent what the protocol does not allow
    SLOW_CONSUMER = "slow_consumer"  # it stopped reading: the backlog bound was reached
    SHUTDOWN = "shutdown"  # the agent is stopping


class SidecarChannel:
    """One sidecar's stream as the agent sees it: who, and what is queued for it.

    `end()` ends it at once; the stream handler then unregisters its sessions (fate
    sharing). A clean end (the sidecar half-closed) still delivers the session messages
    queued before it; any other end drops the backlog, and later pushes are dropped.
    `resnapshot` gives a snapshot of the current view for a view channel that fell behind.
    """

    def __init__(
        self,
        channel_id: str,
        sidecar: str,
        wants_view: bool,
        encoder: SidecarEncoder,
        resnapshot: Callable[[], ViewSnapshot] | None = None,
    ) -> None:
        self.channel_id = channel_id
        self.sidecar = sidecar
        self.wants_view = wants_view
        self._encoder = encoder
        self._resnapshot = resnapshot
        self._sessions: deque[bytes] = deque()
        self._view: deque[bytes | ViewSnapshot] = deque()
        self._session_bytes = 0  # counting FRAME_OVERHEAD per frame
        self._view_bytes = 0
        self._wake: asyncio.Future[None] | None = None
        self._ended = asyncio.Event()
        # Why the channel ends: an error for the sidecar, or None for a clean end.
        self.failure: LockdError | None = None
        self.end_reason: EndReason | None = None

    @property
    def ended(self) -> bool:
        return self.end_reason is not None

    @property
    def queued_messages(self) -> int:
        return len(self._sessions) + len(self._view)

    @property
    def queued_bytes(self) -> int:
        return self._session_bytes + self._view_bytes

    def push(self, frame: bytes) -> None:
        if self.ended:
            return
        self._sessions.append(frame)
        self._session_bytes += len(frame) + FRAME_OVERHEAD
        if self._session_bytes > MAX_QUEUED_BYTES:
            self.end(
                UnavailableError(
                    f"slow consumer: more than {MAX_QUEUED_BYTES >> 20} MiB of messages waited "
                    "for this channel; its sessions are unregistered, reconnect and register "
                    "them again"
                ),
                EndReason.SLOW_CONSUMER,
            )
        self._notify()

    def push_view(self, item: bytes | ViewSnapshot) -> None:
        if self.ended:
            return
        size = len(item) if isinstance(item, bytes) else 0
        if size and self._view_bytes + size > MAX_VIEW_BYTES and self._resnapshot is not None:
            item, size = self._resnapshot(), 0  # it includes this change
        if isinstance(item, ViewSnapshot):
            # A snapshot supersedes the view frames still waiting (the copy starts over
            # from it), so a channel never holds more than one.
            self._view.clear()
            self._view_bytes = 0
        self._view.append(item)
        self._view_bytes += size
        self._notify()

    def end(self, failure: LockdError | None = None, reason: EndReason | None = None) -> None:
        """End the channel (the first call decides why); see the class docstring."""
        if self.ended:
            return
        self.end_reason = reason or (EndReason.CLOSED if failure is None else EndReason.INVALID)
        self.failure = failure
        self._view.clear()
        self._view_bytes = 0
        if failure is not None:
            self._sessions.clear()
            self._session_bytes = 0
        self._ended.set()
        self._notify()

    async def wait_ended(self) -> None:
        await self._ended.wait()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _pop_session_frame(self) -> bytes:
        frame = self._sessions.popleft()
        self._session_bytes -= len(frame) + FRAME_OVERHEAD
        return frame

    async def frames(self) -> AsyncIterator[bytes]:
        """Every frame in order (session messages first) until the channel ends."""
        while True:
            if self._sessions:
                yield self._pop_session_frame()
            elif self.ended:
                return
            elif self._view:
                item = self._view.popleft()
                if isinstance(item, bytes):
                    self._view_bytes -= len(item)
                    yield item
                    continue
                for frame in item.frames(self._encoder):
                    # Session messages queued meanwhile overtake the rest of it.
                    while self._sessions:
                        yield self._pop_session_frame()
                    if self.ended:
                        break
                    yield frame
            else:
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
                self._wake = None

"""One sidecar's channel as the agent sees it: who it is and what is queued for it.

Two FIFO queues per channel. Session messages (registration results, terminations) go
first; view frames (snapshot, events, freshness) after them, so a termination is never
stuck behind a large snapshot, and a sidecar whose copy reached revision R has already
received every termination of the events up to R. Frames are bytes from a
`SidecarEncoder` (the wire format is the adapter's business: `lockd.api.session_channel`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from lockd.domain.errors import LockdError, UnavailableError
from lockd.domain.events import Event
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ReplicatedResource
from lockd.domain.sessions import SessionMetadata
from lockd.domain.view import Decision, SyncState, TerminationCause

# Bytes queued for a channel before it counts as a sidecar that stopped reading.
MAX_QUEUED_BYTES = 32 << 20
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


class SidecarChannel:
    """One sidecar's stream as the agent sees it: who, and what is queued for it."""

    def __init__(
        self, channel_id: str, sidecar: str, wants_view: bool, encoder: SidecarEncoder
    ) -> None:
        self.channel_id = channel_id
        self.sidecar = sidecar
        self.wants_view = wants_view
        self._encoder = encoder
        self._sessions: deque[bytes] = deque()
        self._view: deque[bytes | ViewSnapshot] = deque()
        self._queued = 0
        self._wake: asyncio.Future[None] | None = None
        # Why the channel ends: an error for the sidecar, or None for a clean end.
        self.failure: LockdError | None = None
        self.ended = False

    def push(self, frame: bytes) -> None:
        self._sessions.append(frame)
        self._count(len(frame))

    def push_view(self, item: bytes | ViewSnapshot) -> None:
        self._view.append(item)
        self._count(len(item) if isinstance(item, bytes) else 0)

    def _count(self, size: int) -> None:
        self._queued += size
        if self._queued > MAX_QUEUED_BYTES and not self.ended:
            self.end(
                UnavailableError(
                    f"slow consumer: more than {MAX_QUEUED_BYTES >> 20} MiB queued for this "
                    "channel; its sessions are unregistered, reconnect and register them again"
                )
            )
        self._notify()

    def end(self, failure: LockdError | None = None) -> None:
        """End the channel: its writer stops (raising `failure`, if any) at once."""
        if not self.ended:
            self.ended = True
            self.failure = failure
        self._notify()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def frames(self) -> AsyncIterator[bytes]:
        """Every frame in order (session messages first) until the channel ends."""
        while True:
            if self.ended:
                if self.failure is not None:
                    raise self.failure
                return
            if self._sessions:
                frame = self._sessions.popleft()
                self._queued -= len(frame)
                yield frame
            elif self._view:
                item = self._view.popleft()
                if isinstance(item, bytes):
                    self._queued -= len(item)
                    yield item
                else:
                    for frame in item.frames(self._encoder):
                        # Session messages queued meanwhile overtake the rest of it.
                        while self._sessions and not self.ended:
                            urgent = self._sessions.popleft()
                            self._queued -= len(urgent)
                            yield urgent
                        yield frame
            else:
                self._wake = asyncio.get_running_loop().create_future()
                await self._wake
                self._wake = None

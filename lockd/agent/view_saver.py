"""Saving the view before acknowledging it: the agent's side of "an ack means saved".

Every applied slice of events becomes one journal record; a snapshot (or a journal grown
past its base) becomes a new base file. Records go out in rounds: one worker-thread
call appends everything queued since the last round with a single fsync (group commit),
so a burst of batches costs one fsync, not one each. `saved` is the (epoch, revision) of
the last round that reached the disk — the only revision the agent acknowledges
(docs/protocol.md, "Acks"). Without a data dir nothing is saved and `saved` follows the
applied view at once (an ack then promises only "applied").

A failed write (disk full, read-only) is logged; `saved` stops advancing, so the agent
stops acknowledging, and the next round writes a fresh base of the whole view rather
than appending after what may be a torn record.
"""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from lockd.agent.journal import Recovery, ViewJournal, encode_events
from lockd.agent.mode_file import MODES_FILE_NAME, modes_of, save_modes
from lockd.domain.events import Event, ReplicatedState
from lockd.domain.lock_table import LockTable
from lockd.domain.resources import Kind
from lockd.domain.view import AssumedModes, LocalView, Termination

_log = structlog.get_logger("lockd.agent.save")

RETRY_AFTER_FAILURE = 1.0


@dataclass(frozen=True, slots=True)
class _Records:
    epoch: str
    events: Sequence[Event]


@dataclass(frozen=True, slots=True)
class _Base:
    state: ReplicatedState


@dataclass(frozen=True, slots=True)
class _Modes:
    modes: AssumedModes


_Item = _Records | _Base | _Modes


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where the C library has one."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give the pages a base write freed back to the system (blocking: a worker thread).

    A base write holds a copy of the view and its encoded pieces for a moment; glibc
    keeps the freed heap pages, so an agent with 100k locks stayed ~27 MB above what it
    holds (~540 against ~275 bytes of RSS per lock) after every snapshot.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def copy_state(state: ReplicatedState) -> ReplicatedState:
    """A shallow copy (resources are immutable) that later changes do not touch; the
    locks stay compact (a LockTable copies its records, it does not decode them)."""
    locks = state.locks
    return ReplicatedState(
        state.epoch,
        state.revision,
        locks.copy() if isinstance(locks, LockTable) else dict(locks),
        dict(state.roles),
        state.cluster_auth_preference,
    )


class ViewSaver:
    """Listens to the runtime (a RuntimeListener) and saves what the view applied."""

    def __init__(
        self,
        view: LocalView,
        journal: ViewJournal | None = None,
        modes_path: Path | None = None,
    ) -> None:
        self._view = view  # read on the loop only
        self._journal = journal
        self._in_flight: asyncio.Future[tuple[str, int] | None] | None = None
        self._modes_path = modes_path
        self._pending: list[_Item] = []
        self._wake = asyncio.Event()
        self._need_base = False
        self._modes = modes_of(view.state)
        self.saved: tuple[str, int] = (view.state.epoch, view.state.revision)
        # Set after every round that advanced `saved` (the acker clears it).
        self.progress = asyncio.Event()

    @classmethod
    def open(cls, view: LocalView, journal: ViewJournal, recovery: Recovery) -> ViewSaver:
        """A saver continuing the journal that `recovery` read (blocking: at start)."""
        journal.open(recovery)
        saver = cls(view, journal, journal.directory / MODES_FILE_NAME)
        if recovery.state is None or recovery.problems:
            saver._need_base = True  # start from a clean base of what we have
        return saver

    @property
    def persistent(self) -> bool:
        return self._journal is not None

    def sessions_terminated(self, terminations: Sequence[Termination]) -> None:
        """Terminations change nothing on disk."""

    def events_applied(self, epoch: str, events: Sequence[Event]) -> None:
        if self._journal is None:
            self._advance((epoch, self._view.state.revision))
            return
        self._pending.append(_Records(epoch, events))
        for event in events:  # a loop, not any(): this runs for every batch applied
            if event.kind is not Kind.LOCK:
                self._note_modes()
                break
        self._wake.set()

    def snapshot_applied(self) -> None:
        state = self._view.state
        if self._journal is None:
            self._advance((state.epoch, state.revision))
            return
        self._pending.append(_Base(copy_state(state)))
        self._note_modes()
        self._wake.set()

    def _note_modes(self) -> None:
        modes = modes_of(self._view.state)
        if modes != self._modes:
            self._modes = modes
            self._pending.append(_Modes(modes))

    def _advance(self, saved: tuple[str, int]) -> None:
        self.saved = saved
        self.progress.set()

    async def run_forever(self) -> None:
        """Write what was applied, round after round, until cancelled."""
        if self._journal is None:
            return
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """One round: everything queued so far reaches the disk (or fails, logged)."""
        journal = self._journal
        if journal is None:
            return
        if self._need_base:
            self._need_base = False
            state = self._view.state
            self._pending = [_Base(copy_state(state)), _Modes(modes_of(state))]
        elif journal.wants_compaction():
            self._pending.append(_Base(copy_state(self._view.state)))
        if not self._pending:
            return
        items, self._pending = self._pending, []
        based = any(isinstance(item, _Base) for item in items)
        # The write goes on in its thread even when this task is cancelled (at stop);
        # `close` waits for it before it closes the journal's file under it.
        self._in_flight = asyncio.ensure_future(asyncio.to_thread(self._write, journal, items))
        del items  # a base's copy of the view is freed with the write
        try:
            saved = await asyncio.shield(self._in_flight)
        except OSError as error:
            _log.error(
                "could not save the view; not acknowledging new revisions until it is saved",
                path=str(journal.directory),
                error=str(error),
            )
            self._need_base = True
            await asyncio.sleep(RETRY_AFTER_FAILURE)
            self._wake.set()
            return
        if saved is not None:
            self._advance(saved)
        if based:
            await asyncio.to_thread(release_freed_memory)

    def _write(self, journal: ViewJournal, items: list[_Item]) -> tuple[str, int] | None:
        """On the worker thread: the items in order, consecutive records in one append."""
        records: list[bytes] = []
        saved: tuple[str, int] | None = None
        for item in items:
            if isinstance(item, _Records):
                records.append(encode_events(item.epoch, item.events))
                saved = (item.epoch, item.events[-1].revision)
                continue
            if records:
                journal.append(records)
                records = []
            if isinstance(item, _Base):
                journal.compact(item.state)
                saved = (item.state.epoch, item.state.revision)
            elif self._modes_path is not None:
                save_modes(self._modes_path, journal.owner, item.modes)
        if records:
            journal.append(records)
        return saved

    async def close(self) -> None:
        """Save what is still queued (at shutdown) and close the journal."""
        if self._journal is None:
            return
        self._wake.clear()
        in_flight = self._in_flight
        if in_flight is not None:
            # A write whose flush was cancelled at stop: let it finish, and say if it failed.
            await asyncio.wait([in_flight])
            failure = None if in_flight.cancelled() else in_flight.exception()
            if failure is not None:
                _log.error("could not save the view at stop", error=str(failure))
        await self.flush()
        self._journal.close()

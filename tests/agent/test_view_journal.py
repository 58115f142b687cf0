"""The persisted view as a journal: appends survive a crash, a torn tail is cut, the
base and the journal agree after compaction, and modes are kept apart from the locks.

Real files in tmp_path; a "crash" is simply not closing the journal (every append is
fsynced before it returns) and cutting bytes off its end.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockd.agent.journal import JOURNAL_FILE_NAME, Recovery, ViewJournal
from lockd.agent.mode_file import (
    MODES_FILE_NAME,
    UNKNOWN_MODES,
    load_modes,
    modes_of,
    save_modes,
    startup_modes,
)
from lockd.agent.persist import VIEW_FILE_NAME, ViewOwner
from lockd.agent.view_saver import ViewSaver
from lockd.domain.errors import ValidationError
from lockd.domain.events import Event, ReplicatedState
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ClusterAuthPreference, Role
from lockd.domain.view import AssumedModes, LocalView, ViewSettings

OWNER = ViewOwner("test.lockd", "node-1")
WALL = datetime(2026, 1, 1, tzinfo=UTC)
EPOCH = "e1"


def lock_event(revision: int, user: str) -> Event:
    return Event.put(revision, Lock(f"lock-{revision}", LockTarget(user=user)), WALL)


async def saver_at(directory: Path, state: ReplicatedState) -> ViewSaver:
    """A saver over a view holding `state`, continuing whatever `directory` holds."""
    journal = ViewJournal(directory, OWNER)
    recovery = await asyncio.to_thread(journal.recover)
    view = LocalView(ViewSettings("node-1"), state)
    return await asyncio.to_thread(ViewSaver.open, view, journal, recovery)


async def recover(directory: Path, owner: ViewOwner = OWNER) -> Recovery:
    """What an agent starting on `directory` would find (file IO off the loop)."""
    return await asyncio.to_thread(ViewJournal(directory, owner).recover)


async def journal_at_one(directory: Path) -> tuple[ReplicatedState, ViewSaver]:
    """A saved base at revision 0 plus one journal record (lock-1 on alice)."""
    state = ReplicatedState(EPOCH, 0)
    saver = await saver_at(directory, state)
    saver.snapshot_applied()
    await saver.flush()
    event = lock_event(1, "alice")
    state.apply(event)
    saver.events_applied(EPOCH, [event])
    await saver.flush()
    return state, saver


async def test_appended_events_are_recovered_on_top_of_the_base(tmp_path: Path) -> None:
    """A snapshot becomes the base; later slices are appended records; recovery
    replays them in order, and `saved` names the last revision on disk."""
    state = ReplicatedState(EPOCH, 3)
    saver = await saver_at(tmp_path, state)
    saver.snapshot_applied()
    await saver.flush()
    for revision in (4, 5, 6):
        event = lock_event(revision, f"user-{revision}")
        state.apply(event)
        saver.events_applied(EPOCH, [event])
    await saver.flush()
    assert saver.saved == (EPOCH, 6)
    recovered = await recover(tmp_path)
    assert recovered.problems == []
    assert recovered.state is not None
    assert recovered.state.revision == 6
    assert sorted(recovered.state.locks) == ["lock-4", "lock-5", "lock-6"]
    assert recovered.replayed == 3  # one record per applied slice (one append, one fsync)


async def test_a_torn_last_record_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    """A crash in mid-append leaves a partial record: recovery keeps every intact
    record before it, says what it ignored, and appends continue after the cut."""
    state = ReplicatedState(EPOCH, 0)
    saver = await saver_at(tmp_path, state)
    saver.snapshot_applied()
    await saver.flush()
    for revision in (1, 2):
        event = lock_event(revision, "alice")
        state.apply(event)
        saver.events_applied(EPOCH, [event])
        await saver.flush()
    path = tmp_path / JOURNAL_FILE_NAME
    raw = path.read_bytes()
    path.write_bytes(raw[:-7])  # the last record loses its end
    journal = ViewJournal(tmp_path, OWNER)
    recovery = await asyncio.to_thread(journal.recover)
    assert recovery.state is not None
    assert recovery.state.revision == 1
    assert any("torn" in problem for problem in recovery.problems)
    state = recovery.state
    view = LocalView(ViewSettings("node-1"), state)
    saver = await asyncio.to_thread(ViewSaver.open, view, journal, recovery)
    event = lock_event(2, "bob")
    state.apply(event)
    saver.events_applied(EPOCH, [event])
    await saver.flush()
    again = await recover(tmp_path)
    assert again.state is not None
    assert again.state.revision == 2
    assert again.state.locks["lock-2"].target.user == "bob"


async def test_a_damaged_record_stops_the_replay_at_its_checksum(tmp_path: Path) -> None:
    """A flipped byte inside a record fails its CRC: nothing from it on is applied."""
    await journal_at_one(tmp_path)
    path = tmp_path / JOURNAL_FILE_NAME
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    recovery = await recover(tmp_path)
    assert recovery.state is not None
    assert recovery.state.revision == 0


async def test_compaction_writes_a_new_base_and_skips_what_it_covers(tmp_path: Path) -> None:
    """After a compaction the base holds everything; records from before it (a crash
    between writing the base and starting the journal) are skipped, not applied twice."""
    _, saver = await journal_at_one(tmp_path)
    old_journal = (tmp_path / JOURNAL_FILE_NAME).read_bytes()
    saver.snapshot_applied()  # compaction = a new base at revision 1
    await saver.flush()
    (tmp_path / JOURNAL_FILE_NAME).write_bytes(old_journal)  # as if the crash came now
    recovery = await recover(tmp_path)
    assert recovery.problems == []
    assert recovery.state is not None
    assert recovery.state.revision == 1
    assert recovery.replayed == 0


async def test_a_journal_of_another_agent_is_not_replayed(tmp_path: Path) -> None:
    """The journal's first record names its owner; another agent's is started over."""
    state = ReplicatedState(EPOCH, 0)
    saver = await saver_at(tmp_path, state)
    saver.snapshot_applied()
    await saver.flush()
    (tmp_path / "other").mkdir()
    other = ViewJournal(tmp_path / "other", ViewOwner("test.lockd", "node-2"))
    await asyncio.to_thread(other.open, await recover(tmp_path / "other", other.owner))
    other.close()
    (tmp_path / JOURNAL_FILE_NAME).write_bytes(
        (tmp_path / "other" / JOURNAL_FILE_NAME).read_bytes()
    )
    recovery = await recover(tmp_path)
    assert any("does not belong" in problem for problem in recovery.problems)


async def test_the_modes_file_follows_role_and_preference_changes(tmp_path: Path) -> None:
    """A strict preference or a strict role is written to modes.json apart from the
    view, and read back even when the view itself is gone."""
    state = ReplicatedState(EPOCH, 0)
    saver = await saver_at(tmp_path, state)
    saver.snapshot_applied()
    await saver.flush()
    events = [
        Event.put(1, ClusterAuthPreference(LockingMode.STRICT), WALL),
        Event.put(2, Role("contractor", lock_mode=LockingMode.STRICT), WALL),
    ]
    for event in events:
        state.apply(event)
    saver.events_applied(EPOCH, events)
    await saver.flush()
    (tmp_path / VIEW_FILE_NAME).unlink()
    modes = await asyncio.to_thread(load_modes, tmp_path / MODES_FILE_NAME, OWNER)
    assert modes == AssumedModes(LockingMode.STRICT, frozenset({"contractor"}))
    assert modes == modes_of(state)


def test_a_damaged_modes_file_is_not_trusted(tmp_path: Path) -> None:
    """A modes file whose checksum fails raises, so the agent assumes strict."""
    path = tmp_path / MODES_FILE_NAME
    save_modes(path, OWNER, AssumedModes(LockingMode.BEST_EFFORT))
    path.write_bytes(path.read_bytes().replace(b"best_effort", b"strict"))
    with pytest.raises(ValidationError):
        load_modes(path, OWNER)


def test_startup_assumes_strict_only_when_it_synced_before_and_knows_nothing() -> None:
    """Loaded view: nothing assumed; saved modes: those; synced before but nothing
    readable: strict; a first start: nothing (agent_service.locking_mode decides)."""
    saved = AssumedModes(LockingMode.BEST_EFFORT, frozenset({"dev"}))
    assert startup_modes(True, True, saved) is None
    assert startup_modes(False, True, saved) == saved
    assert startup_modes(False, True, None) == UNKNOWN_MODES
    assert startup_modes(False, False, None) is None


async def test_without_a_data_dir_saved_follows_the_view_at_once() -> None:
    """No journal: nothing to wait for, an ack may report what was applied."""
    state = ReplicatedState(EPOCH, 0)
    saver = ViewSaver(LocalView(ViewSettings("node-1"), state))
    event = lock_event(1, "alice")
    state.apply(event)
    saver.events_applied(EPOCH, [event])
    assert saver.saved == (EPOCH, 1)

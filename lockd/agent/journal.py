"""The persisted view as an append-only journal over a compacted base file.

`<data_dir>/view.json` (lockd.agent.persist) holds the whole view at some revision; the
journal `<data_dir>/view.journal` holds every change applied since, one record per
applied slice of events, each appended and fsynced before the agent acknowledges it —
so a change costs one small write instead of rewriting every lock. When the journal
grows past the size of the base (and at least `COMPACT_MIN_BYTES`), or a snapshot
replaces the view, the whole view is written as the new base and the journal starts
over.

Record framing: `LJ` + big-endian u32 payload length + u32 CRC-32 of the payload +
the payload (compact JSON). The first record names the journal's owner (cluster and
agent) and format; each later one carries `{"epoch", "events"}`. On recovery the base
is loaded, then records are replayed while they continue it (same epoch, the next
revision); replay stops at the first record that is torn (a crash in mid-append),
fails its checksum, or does not follow, and the file is cut there so appends continue
on a clean end.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lockd.agent.persist import VIEW_FILE_NAME, ViewOwner, ViewWriter, load_view
from lockd.domain.documents import decode_resource, encode_resource
from lockd.domain.errors import ValidationError
from lockd.domain.events import Event, EventType, ReplicatedState, unpacked
from lockd.domain.lock import Lock
from lockd.domain.resources import ClusterAuthPreference, Kind, Role
from lockd.domain.unix_micros import to_micros
from lockd.durable_files import fsync_directory

JOURNAL_FILE_NAME = "view.journal"
JOURNAL_FORMAT = "lockd-view-journal/1"
MAGIC = b"LJ"
_HEADER = struct.Struct(">2sII")
# Below this the journal is never compacted: replaying a few MiB at start is cheap.
COMPACT_MIN_BYTES = 4 << 20
# A record claiming more than this is damage, not a record (a slice is far smaller).
MAX_RECORD_BYTES = 64 << 20


def frame(payload: bytes) -> bytes:
    """One journal record: magic, length, CRC-32, payload."""
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def encode_events(epoch: str, events: Sequence[Event]) -> bytes:
    """The framed record of one applied slice of events."""
    items = [
        {
            "r": event.revision,
            "t": event.type.value,
            "k": event.kind.value,
            "n": event.name,
            "d": None if event.resource is None else encode_resource(unpacked(event.resource)),
            "ts": event.time.isoformat(),
        }
        for event in events
    ]
    return frame(_compact({"epoch": epoch, "events": items}))


def _decode_events(payload: dict[str, Any]) -> tuple[str, list[Event]]:
    epoch, items = payload["epoch"], payload["events"]
    if not isinstance(epoch, str) or not isinstance(items, list) or not items:
        raise ValueError("not an event record")
    events = []
    for item in items:
        document = item["d"]
        resource = None if document is None else decode_resource(document)
        if not isinstance(resource, Lock | Role | ClusterAuthPreference | None):
            raise ValueError("an event of a kind that is not replicated")
        moment = datetime.fromisoformat(item["ts"])
        if moment.utcoffset() is None:
            raise ValueError("an event time without a time zone")
        events.append(
            Event(
                int(item["r"]),
                EventType(item["t"]),
                Kind(item["k"]),
                str(item["n"]),
                resource,
                to_micros(moment),
            )
        )
    return epoch, events


def _owner_record(owner: ViewOwner) -> bytes:
    header = {"format": JOURNAL_FORMAT, "cluster": owner.cluster, "server_id": owner.server_id}
    return frame(_compact(header))


def _compact(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def read_records(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, payload) of each intact record from the start; stops at the first
    torn or damaged one."""
    offset = 0
    while offset + _HEADER.size <= len(raw):
        magic, length, crc = _HEADER.unpack_from(raw, offset)
        start = offset + _HEADER.size
        end = start + length
        if magic != MAGIC or length > MAX_RECORD_BYTES or end > len(raw):
            return
        payload = raw[start:end]
        if zlib.crc32(payload) != crc:
            return
        offset = end
        yield offset, payload


@dataclass
class Recovery:
    """What was found on disk at start."""

    state: ReplicatedState | None
    # Some persisted view was there (base or journal), usable or not: this agent has
    # synced before, so "no view" is not a first start.
    existed: bool = False
    # Why something on disk was not used (logged by the caller); empty when all was.
    problems: list[str] = field(default_factory=list)
    replayed: int = 0  # journal records applied on top of the base
    valid_length: int = 0  # bytes of the journal that hold intact, owned records


class ViewJournal:
    """The base file and the journal of one agent's data dir (blocking IO: run it on a
    worker thread)."""

    def __init__(self, directory: Path, owner: ViewOwner) -> None:
        self.directory = directory
        self.owner = owner
        self.base_path = directory / VIEW_FILE_NAME
        self.path = directory / JOURNAL_FILE_NAME
        self._writer = ViewWriter(self.base_path, owner)
        self._fd: int | None = None
        self.size = 0  # bytes in the journal
        self.base_size = 0  # bytes in the base file

    def recover(self) -> Recovery:
        """Load the base and replay the journal onto it."""
        recovery = Recovery(None, existed=self.base_path.exists() or self.path.exists())
        try:
            state = load_view(self.base_path, self.owner)
        except ValidationError as error:
            recovery.problems.append(str(error))
            return recovery
        if state is None:
            if self.path.exists():
                recovery.problems.append(f"{self.path} has no base view ({self.base_path})")
            return recovery
        self.base_size = self.base_path.stat().st_size
        recovery.state = state
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return recovery
        except OSError as error:
            recovery.problems.append(f"cannot read {self.path}: {error}")
            return recovery
        self._replay(raw, state, recovery)
        if recovery.valid_length < len(raw) and recovery.valid_length:
            recovery.problems.append(
                f"{self.path}: ignored {len(raw) - recovery.valid_length} bytes after the "
                "last intact record (a torn append)"
            )
        return recovery

    def _replay(self, raw: bytes, state: ReplicatedState, recovery: Recovery) -> None:
        records = read_records(raw)
        first = next(records, None)
        if first is None or not self._owned(first[1]):
            recovery.problems.append(f"{self.path} does not belong to this view; starting it over")
            return
        recovery.valid_length = first[0]
        for end, payload in records:
            try:
                epoch, events = _decode_events(json.loads(payload))
            except (ValueError, TypeError, KeyError, ValidationError) as error:
                recovery.problems.append(f"{self.path}: unreadable record ({error!r})")
                return
            if epoch != state.epoch or events[-1].revision <= state.revision:
                recovery.valid_length = end  # from before the base: already in it
                continue
            if events[0].revision != state.revision + 1:
                recovery.problems.append(
                    f"{self.path}: record {events[0].revision}..{events[-1].revision} "
                    f"does not follow revision {state.revision}"
                )
                return
            for event in events:
                state.apply(event)
            recovery.replayed += 1
            recovery.valid_length = end

    def _owned(self, payload: bytes) -> bool:
        try:
            header = json.loads(payload)
        except ValueError:
            return False
        return isinstance(header, dict) and header == {
            "format": JOURNAL_FORMAT,
            "cluster": self.owner.cluster,
            "server_id": self.owner.server_id,
        }

    def open(self, recovery: Recovery) -> None:
        """Continue the journal after what `recover` found intact (cutting a torn tail),
        or start a new one."""
        if recovery.state is None or recovery.valid_length == 0:
            self._start_journal()
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        os.ftruncate(fd, recovery.valid_length)
        os.fsync(fd)
        self._fd, self.size = fd, recovery.valid_length

    def append(self, records: Sequence[bytes]) -> None:
        """Append the records and fsync: once this returns they survive a crash."""
        if self._fd is None:
            self._start_journal()
        assert self._fd is not None
        data = b"".join(records)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self.size += len(data)

    def wants_compaction(self) -> bool:
        return self.size > max(COMPACT_MIN_BYTES, self.base_size)

    def compact(self, state: ReplicatedState) -> None:
        """Write `state` as the new base (atomically), then start an empty journal.

        A crash between the two leaves the old journal, whose records are then all at
        or below the new base's revision (or of another epoch) and are skipped."""
        self._writer.save(state)
        self.base_size = self.base_path.stat().st_size
        self._start_journal()

    def _start_journal(self) -> None:
        self.close()
        temporary = self.path.with_name(f".{JOURNAL_FILE_NAME}.new")
        header = _owner_record(self.owner)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, header)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        fsync_directory(self.directory)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self.size = len(header)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

"""JsonLinesAuditSink.reopen: after the file was renamed away (logrotate), later lines
go to a new file at the configured path; a stream sink has nothing to reopen."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from lockd.obs.audit import lock_deleted
from lockd.obs.audit_writer import JsonLinesAuditSink

WHEN = datetime(2021, 8, 14, 12, 27, tzinfo=UTC)


def test_reopen_writes_to_a_new_file_after_a_rename(tmp_path: Path) -> None:
    """Line one stays in the rotated file, line two lands in a new 0600 file."""
    path = tmp_path / "audit.log"
    sink = JsonLinesAuditSink(path)
    sink.emit(lock_deleted("one", "alice", "c", WHEN))
    path.rename(tmp_path / "audit.log.1")
    sink.reopen()
    sink.emit(lock_deleted("two", "alice", "c", WHEN))
    sink.close()
    assert '"name":"one"' in (tmp_path / "audit.log.1").read_text()
    assert '"name":"two"' in path.read_text()
    assert '"name":"one"' not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600


def test_reopen_of_a_stream_sink_keeps_writing_to_the_stream() -> None:
    """stdout-like sinks are not files: reopen changes nothing."""
    stream = io.StringIO()
    sink = JsonLinesAuditSink(stream)
    sink.reopen()
    sink.emit(lock_deleted("one", "alice", "c", WHEN))
    sink.drain()
    assert '"name":"one"' in stream.getvalue()

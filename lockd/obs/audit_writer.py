"""The audit trail on disk (or a stream): JSON lines written by a thread of their own.

`emit` is called on the event loop (every lock change, every registered and terminated
session), so it does no more than queue the event: the writer thread serialises it,
appends and flushes (JSON encoding was a fifth of the agent's loop in registration
bursts). Lines keep their order. The queue is bounded; when the
disk cannot keep up and the queue is full, `emit` waits for room rather than lose an
audit line. A write that fails is logged with the lines it lost, never dropped quietly.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path
from typing import TextIO

import structlog

from lockd.obs.audit import AuditEvent

_log = structlog.get_logger("lockd.audit")

QUEUE_LINES = 65_536
_REOPEN = object()
_STOP = object()


class JsonLinesAuditSink:
    """Appends one JSON object per line to a file or a stream, flushing each batch.

    A file is opened in append mode (so several runs accumulate in one file) and created
    with mode 0600; its directory is created (0700) when missing. A stream (stdout) is
    written to but never closed. Lines are flushed to the OS, not fsynced, shortly after
    `emit` returns; `drain()` waits until everything emitted so far is written. Safe to
    call from several threads.
    """

    def __init__(self, target: Path | TextIO) -> None:
        self.path: Path | None
        if isinstance(target, Path):
            self._stream: TextIO = _open_append(target)
            self._owned = True
            self.path = target
        else:
            self._stream = target
            self._owned = False
            self.path = None
        self._lines: queue.Queue[AuditEvent | object] = queue.Queue(QUEUE_LINES)
        self._closed = False
        self._writer = threading.Thread(
            target=self._write_forever, name="audit-writer", daemon=True
        )
        self._writer.start()

    def emit(self, event: AuditEvent) -> None:
        self._lines.put(event)

    def reopen(self) -> None:
        """Close the file and open its path again (SIGHUP, after logrotate renamed it):
        lines emitted after this call go to a new file at the configured path. A
        stream: nothing to do."""
        if self.path is not None:
            self._lines.put(_REOPEN)

    def drain(self) -> None:
        """Return once every line emitted before this call is written and flushed."""
        self._lines.join()

    def close(self) -> None:
        """Write what is queued, stop the writer, close the file (not a stream)."""
        if self._closed:
            return
        self._closed = True
        self._lines.put(_STOP)
        self._writer.join()

    def _write_forever(self) -> None:
        while True:
            item = self._lines.get()
            try:
                if item is _STOP:
                    if self._owned:
                        self._stream.close()
                    return
                if item is _REOPEN:
                    self._reopen()
                    continue
                assert isinstance(item, AuditEvent)
                self._write(item)
            finally:
                self._lines.task_done()

    def _write(self, first: AuditEvent) -> None:
        batch = [first]
        while len(batch) < 1024:  # whatever is already waiting goes in one write
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, AuditEvent):
                self._lines.task_done()
                # A control item: write the batch first, then act on it in order.
                self._flush(batch)
                self._control(item)
                return
            batch.append(item)
            self._lines.task_done()
        self._flush(batch)

    def _control(self, item: object) -> None:
        if item is _REOPEN:
            self._reopen()
        else:  # _STOP: put it back for the loop, which closes and returns
            self._lines.put(item)

    def _flush(self, batch: list[AuditEvent]) -> None:
        try:
            self._stream.write("".join(_line(event) for event in batch))
            self._stream.flush()
        except (OSError, ValueError) as error:
            _log.error("could not write audit lines", lost=len(batch), error=str(error))

    def _reopen(self) -> None:
        assert self.path is not None
        try:
            replacement = _open_append(self.path)
        except OSError as error:
            _log.error("could not reopen the audit log", path=str(self.path), error=str(error))
            return
        self._stream.close()
        self._stream = replacement


def _line(event: AuditEvent) -> str:
    try:
        return event.to_json() + "\n"
    except (TypeError, ValueError) as error:  # a field JSON cannot hold: a bug to see
        _log.error("could not encode an audit event", audit_event=event.event, error=str(error))
        return ""


def _open_append(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
    return open(os.open(path, flags, 0o600), "a", encoding="utf-8")


def open_audit_sink(target: Path | str) -> JsonLinesAuditSink:
    """ "stdout" or "stderr" → that stream; anything else → a file at that path.

    With the config: `open_audit_sink(audit_path(config) or config.audit.sink)`.
    """
    if target == "stdout":
        return JsonLinesAuditSink(sys.stdout)
    if target == "stderr":
        return JsonLinesAuditSink(sys.stderr)
    return JsonLinesAuditSink(Path(target))

"""Public fakes for tests of lockd and of code built on it (sidecars, tools).

`FakeClock` is a `Clock` whose wall and monotonic times move only when told to;
`SteppedClock` runs in real time and can be stepped forward;
`MemoryStore` and `MemoryAuditSink` are re-exported from their adapters.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from lockd.obs.audit import MemoryAuditSink
from lockd.store.memory import MemoryStore

__all__ = ["FakeClock", "MemoryAuditSink", "MemoryStore", "SteppedClock"]


class FakeClock:
    """A clock for tests: `advance()` moves wall and monotonic time together."""

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._wall += timedelta(seconds=seconds)
        self._monotonic += seconds


class SteppedClock:
    """Real time that a test can step forward: wall and monotonic time run as the
    system's do, plus every `advance()`. For a whole server under test, whose timers
    (heartbeats, streams) must keep running while the test jumps past an expiry."""

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._offset += seconds

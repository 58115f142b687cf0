"""Public fakes for tests of lockd and of code built on it (sidecars, tools).

`FakeClock` is a `Clock` whose wall and monotonic times move only when told to;
`MemoryStore` and `MemoryAuditSink` are re-exported from their adapters.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lockd.obs.audit import MemoryAuditSink
from lockd.store.memory import MemoryStore

__all__ = ["FakeClock", "MemoryAuditSink", "MemoryStore"]


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

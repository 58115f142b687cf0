"""Reconnect delays: exponential backoff with full jitter (0.5 s → 30 s by default).

Pure: the random draw is injected. The agent resets the attempt count after a healthy
period, and a server's `retry_after` sets a floor for the next delay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, draw: Callable[[], float], floor: float = 0.0) -> float:
        """Delay before retry number `attempt` (0-based): uniform in [0, min(cap, base·2^n)],
        never below `floor` (a server's retry_after)."""
        ceiling = min(self.cap, self.base * (1 << min(attempt, 32)))
        return max(floor, draw() * ceiling)

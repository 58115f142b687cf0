"""When the agent gives up a silent WatchLocks stream.

The auth server sends something at least every heartbeat interval (a Heartbeat when
nothing else went out), and tells the interval in every Heartbeat. A stream that stays
silent for `MISSED_HEARTBEATS` intervals plus `GRACE` seconds is dead — a frozen
server, a stalled network that drops packets without closing the connection — and is
abandoned at once, so the agent dials the next auth server instead of waiting for TCP or
HTTP/2 keepalive (tens of seconds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lockd.domain.ports import Clock

MISSED_HEARTBEATS = 3
GRACE = 1.0


class StreamSilence:
    """The silence deadline of one stream, on the agent's clock."""

    def __init__(
        self,
        clock: Clock,
        interval: Callable[[], float],
        missed: int = MISSED_HEARTBEATS,
        grace: float = GRACE,
    ) -> None:
        self._clock = clock
        self._interval = interval  # the heartbeat interval as last learned
        self._missed = missed
        self._grace = grace
        self._last = clock.monotonic()

    def heard(self) -> None:
        """A frame arrived."""
        self._last = self._clock.monotonic()

    def limit(self) -> float:
        """Seconds of silence after which the stream is abandoned."""
        return self._missed * self._interval() + self._grace

    def remaining(self) -> float:
        """Seconds until the stream counts as dead (≤ 0: it does now)."""
        return self._last + self.limit() - self._clock.monotonic()

    async def expired(self) -> None:
        """Return once the stream has been silent for longer than `limit()`."""
        while True:
            left = self.remaining()
            if left <= 0:
                return
            # Frames move the deadline on, and a newly learned (shorter) interval moves it
            # back: look again at least every interval — one wake-up per interval instead
            # of a timer per frame.
            await asyncio.sleep(min(left, self._interval()))

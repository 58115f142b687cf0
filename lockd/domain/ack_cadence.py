"""When an agent's heartbeat-cadence ack is due (docs/protocol.md, *When to ack*).

One at once on connecting, so the server hears from the agent; the next one to two
intervals later, at a random point of the second; then one every interval — never
sooner than an interval after the previous cadence ack, and never more than two apart
(the server takes three intervals of silence for an unresponsive agent).

Agents that connect together — every agent of a fleet after an auth server restart —
would otherwise ack together for as long as their streams last: thousands of acks in
one burst every interval, and a lock fanned out during it waits behind them. Acks sent
on demand (an asked-for revision) do not move the cadence either: a fleet that
acknowledged one `lock --wait` together keeps its spread.

Pure: the random draw is injected.
"""

from __future__ import annotations

from collections.abc import Callable


class AckCadence:
    """The time (a monotonic clock's) the next cadence ack is due."""

    __slots__ = ("_draw", "_spread", "due")

    def __init__(self, now: float, draw: Callable[[], float]) -> None:
        self.due = now  # the first: at once
        self._draw = draw  # uniform in [0, 1)
        self._spread = True  # the next one lands at a random point of the interval after

    def sent(self, now: float, interval: float) -> None:
        """A cadence ack went out at `now`; `interval` is the heartbeat interval."""
        share = 1.0 + self._draw() if self._spread else 1.0
        self._spread = False
        self.due = now + interval * share

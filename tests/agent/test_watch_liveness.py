"""When a silent WatchLocks stream is given up, on the fake clock (no waiting)."""

from __future__ import annotations

from lockd.client.watch_liveness import StreamSilence
from lockd.testing import FakeClock


def test_a_stream_is_abandoned_after_three_heartbeat_intervals_and_a_second() -> None:
    """Silence counts from the last frame: alive until 3 x interval + 1 s, dead after."""
    clock = FakeClock()
    silence = StreamSilence(clock, lambda: 0.2)
    assert silence.limit() == 3 * 0.2 + 1.0
    clock.advance(1.5)
    assert silence.remaining() > 0
    clock.advance(0.2)
    assert silence.remaining() <= 0


def test_every_frame_moves_the_deadline_on() -> None:
    """A frame just before the deadline gives the stream a whole new limit."""
    clock = FakeClock()
    silence = StreamSilence(clock, lambda: 1.0)
    clock.advance(3.9)
    silence.heard()
    clock.advance(3.9)
    assert silence.remaining() > 0
    clock.advance(0.2)
    assert silence.remaining() <= 0


def test_a_learned_shorter_interval_brings_the_deadline_forward() -> None:
    """Until a Heartbeat tells the interval the agent assumes 5 s; once it learns 0.2 s
    the same silence is already too long."""
    clock = FakeClock()
    interval = [5.0]
    silence = StreamSilence(clock, lambda: interval[0])
    clock.advance(2.0)
    assert silence.remaining() > 0
    interval[0] = 0.2
    assert silence.remaining() <= 0

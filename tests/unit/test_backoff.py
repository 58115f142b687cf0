"""Backoff: exponential growth with full jitter, a cap, and a server's retry_after floor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.backoff import Backoff


def test_the_defaults_are_half_a_second_to_thirty_seconds() -> None:
    """DESIGN §4: 0.5 s → 30 s."""
    assert Backoff() == Backoff(base=0.5, cap=30.0)


def test_the_ceiling_doubles_per_attempt_until_the_cap() -> None:
    """With a draw of 1 the delay is the ceiling: base·2^n, then the cap."""
    backoff = Backoff(base=0.5, cap=30.0)
    ceilings = [backoff.delay(attempt, lambda: 1.0) for attempt in range(9)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_full_jitter_scales_the_ceiling_by_the_draw() -> None:
    """Uniform in [0, ceiling]: the draw is the fraction of the ceiling."""
    backoff = Backoff(base=1.0, cap=60.0)
    assert backoff.delay(3, lambda: 0.0) == 0.0
    assert backoff.delay(3, lambda: 0.25) == pytest.approx(2.0)


def test_a_retry_after_is_a_floor() -> None:
    """A server's retry_after is honoured even when the jitter draws less."""
    backoff = Backoff(base=0.05, cap=0.5)
    assert backoff.delay(0, lambda: 0.0, floor=2.0) == 2.0
    assert backoff.delay(10, lambda: 1.0, floor=0.1) == 0.5


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    """No overflow however long the outage lasts."""
    assert Backoff(base=0.5, cap=30.0).delay(10**9, lambda: 1.0) == 30.0


@given(
    attempt=st.integers(0, 200),
    draw=st.floats(0.0, 1.0),
    floor=st.floats(0.0, 100.0),
    base=st.floats(0.001, 5.0),
    cap=st.floats(0.001, 60.0),
)
def test_the_delay_is_always_within_its_bounds(
    attempt: int, draw: float, floor: float, base: float, cap: float
) -> None:
    """floor ≤ delay ≤ max(floor, min(cap, base·2^attempt)), never negative."""
    delay = Backoff(base=base, cap=cap).delay(attempt, lambda: draw, floor)
    assert delay >= floor
    assert delay <= max(floor, min(cap, base * 2.0 ** min(attempt, 32))) + 1e-9

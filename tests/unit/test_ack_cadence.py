"""The heartbeat-cadence ack schedule: at once, then at a random point of the interval
after the next, then every interval — so agents that connected together do not ack
together, and none acks sooner than an interval after its last."""

from __future__ import annotations

import itertools

import pytest

from lockd.domain.ack_cadence import AckCadence

INTERVAL = 5.0


def test_the_first_ack_is_due_at_once() -> None:
    """A new stream's cadence ack is due the moment it starts."""
    assert AckCadence(100.0, lambda: 0.5).due == 100.0


def test_the_second_ack_lands_in_the_interval_after_the_next_then_every_interval() -> None:
    """After the first ack the next is `interval × (1 + draw)` later; after that, one
    interval."""
    draws = iter([0.25, 0.9, 0.9])
    cadence = AckCadence(100.0, lambda: next(draws))
    cadence.sent(100.0, INTERVAL)
    assert cadence.due == 106.25
    cadence.sent(106.25, INTERVAL)
    assert cadence.due == 111.25
    cadence.sent(111.5, INTERVAL)  # sent a little late: the interval counts from then
    assert cadence.due == 116.5


def test_agents_that_connect_together_ack_apart() -> None:
    """Agents started at the same moment, with their own draws, have their cadence acks
    spread over the interval from the second one on, and keep that spread."""
    draws = itertools.count(0.05, 0.1)
    cadences = [AckCadence(0.0, lambda: next(draws)) for _ in range(10)]
    for cadence in cadences:
        cadence.sent(0.0, INTERVAL)
    phases = sorted(cadence.due for cadence in cadences)
    assert phases == pytest.approx([INTERVAL * (1.05 + 0.1 * k) for k in range(10)])
    for cadence in cadences:
        cadence.sent(cadence.due, INTERVAL)
    assert sorted(cadence.due for cadence in cadences) == pytest.approx(
        [phase + INTERVAL for phase in phases]
    )

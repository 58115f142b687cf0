"""LoopHistogram and LoopCounter: the exposition prometheus_client's Histogram and
Counter give for the same values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from lockd.obs.loop_metrics import LoopCounter, LoopHistogram
from lockd.obs.metrics import PROPAGATION_BUCKETS


def exposition(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


@given(
    st.lists(
        st.floats(min_value=0, max_value=100, allow_nan=False)
        | st.sampled_from(PROPAGATION_BUCKETS)
    )
)
def test_observations_expose_exactly_as_a_prometheus_histogram(values: list[float]) -> None:
    """Any values — bucket bounds included (`le` is inclusive) — give the same buckets,
    count and sum lines as prometheus_client's own Histogram."""
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h_seconds", "help", buckets=PROPAGATION_BUCKETS, registry=theirs)
    loop = LoopHistogram("h_seconds", "help", PROPAGATION_BUCKETS, ours)
    for value in values:
        reference.observe(value)
        loop.observe(value)
    assert exposition(ours) == exposition(theirs)


def test_buckets_out_of_order_are_refused() -> None:
    """Buckets must ascend without repeats: a histogram of misordered bounds would lie."""
    with pytest.raises(ValueError, match="distinct and ascending"):
        LoopHistogram("h_seconds", "help", (1.0, 0.5), CollectorRegistry())


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False)))
def test_increments_expose_exactly_as_a_prometheus_counter(amounts: list[float]) -> None:
    """Any increments give the same `_total` line as prometheus_client's own Counter,
    and a `_created` sample as it has."""
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Counter("c_sent_total", "help", registry=theirs)
    loop = LoopCounter("c_sent_total", "help", ours)
    for amount in amounts:
        reference.inc(amount)
        loop.inc(amount)
    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("c_sent_created") is not None


def test_a_counter_refuses_to_go_down() -> None:
    """A negative increment is refused and leaves the value as it was."""
    registry = CollectorRegistry()
    loop = LoopCounter("c_sent", "help", registry)
    loop.inc(2)
    with pytest.raises(ValueError, match="only go up"):
        loop.inc(-1)
    assert registry.get_sample_value("c_sent_total") == 2

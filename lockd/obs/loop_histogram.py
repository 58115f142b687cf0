"""A Prometheus histogram observed from one thread without a lock per observation.

prometheus_client's `Histogram.observe` takes a mutex for the sum and another for the
bucket (~5 µs); an agent observes every lock it applies, so at 100k locks a second
that alone is half a core. `LoopHistogram` is observed only from the event loop's
thread: a bisect and two additions. A scrape (the HTTP endpoint's thread) copies the
counts first, so every exposition is one consistent cumulative set — `_count` is
always its `+Inf` bucket; the sum may be one observation ahead, as with any scrape
taken mid-update.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from math import inf
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString


class LoopHistogram(Collector):
    """An unlabelled histogram; `observe` from the registering event loop's thread only."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(float(bound) for bound in buckets if bound != inf)
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError(f"{name}: buckets must be distinct and ascending")
        self._name, self._documentation = name, documentation
        self._bounds = bounds
        # _counts[i]: observations in (bounds[i-1], bounds[i]]; the last one above all.
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        # The exposition's own spelling of a bound ("0.005", "+Inf"); the function is untyped.
        go_string = cast(Callable[[float], str], floatToGoString)
        self._labels = [go_string(bound) for bound in (*bounds, inf)]
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # `le` is inclusive
        self._sum += value

    def collect(self) -> Iterable[Metric]:
        counts, total = list(self._counts), self._sum
        family = HistogramMetricFamily(self._name, self._documentation)
        family.add_metric([], list(zip(self._labels, _cumulative(counts), strict=True)), total)
        return [family]

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation)]


def _cumulative(counts: Iterable[int]) -> Iterator[float]:
    running = 0
    for count in counts:
        running += count
        yield float(running)

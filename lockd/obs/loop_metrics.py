"""Prometheus metrics updated from one thread without a lock per update.

prometheus_client's `Histogram.observe` takes a mutex for the sum and another for the
bucket (~5 µs), `Counter.inc` one (~2 µs); an agent observes every lock it applies and
the auth server counts every batch every stream sends, so at 1,000 streams or 100k
locks a second that alone is a good part of a core. These are updated only from the
event loop's thread: plain additions. A scrape (the HTTP endpoint's thread) copies the
values first, so every exposition is one consistent set — a histogram's `_count` is
always its `+Inf` bucket; its sum may be one observation ahead, as with any scrape
taken mid-update.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from math import inf
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
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


class LoopCounter(Collector):
    """An unlabelled counter; `inc` from the registering event loop's thread only."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name, self._documentation = name.removesuffix("_total"), documentation
        self._value = 0.0
        self._created = time.time()
        registry.register(self)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(f"{self._name}: counters only go up (inc by {amount})")
        self._value += amount

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(self._name, self._documentation)
        family.add_metric([], self._value, created=self._created)
        return [family]

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self._name, self._documentation)]


def _cumulative(counts: Iterable[int]) -> Iterator[float]:
    running = 0
    for count in counts:
        running += count
        yield float(running)

"""Results of a scenario: percentiles, the readable table and the JSON object.

A `Result` keeps its figures in insertion order under stable snake_case keys whose
suffix names the unit (`_ms`, `_s`, `_mb`, `_kb`, `_per_s`); docs/benchmarks.md lists
every key. The same keys appear in the table and in the JSON line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

Number = int | float
Value = Number | str | bool | None


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(prefix: str, seconds: Sequence[float]) -> dict[str, Value]:
    """`<prefix>_p50_ms`, `_p99_ms` and `_max_ms` of durations given in seconds."""
    return {
        f"{prefix}_p50_ms": _ms(percentile(seconds, 0.50)),
        f"{prefix}_p99_ms": _ms(percentile(seconds, 0.99)),
        f"{prefix}_max_ms": _ms(max(seconds) if seconds else math.nan),
    }


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000, 3)


def mb(size: int) -> float:
    return round(size / (1 << 20), 1)


@dataclass
class Result:
    """One scenario's parameters and figures."""

    scenario: str
    params: dict[str, Value]
    figures: dict[str, Value] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, **figures: Value) -> None:
        self.figures.update(figures)

    def update(self, figures: dict[str, Value]) -> None:
        self.figures.update(figures)

    def to_dict(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "params": dict(self.params),
            "results": dict(self.figures),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False, allow_nan=False)


def _format(value: Value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 100:
            return f"{value:,.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value


def render_table(result: Result, out: TextIO) -> None:
    """A heading with the parameters, then one `figure  value` line per figure."""
    params = " ".join(f"{key}={_format(value)}" for key, value in result.params.items())
    out.write(f"\n== {result.scenario}  {params}\n")
    width = max((len(key) for key in result.figures), default=0)
    for key, value in result.figures.items():
        out.write(f"  {key:<{width}}  {_format(value):>12}\n")
    for note in result.notes:
        out.write(f"  note: {note}\n")
    out.flush()

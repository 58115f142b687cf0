"""`targets`: every propagation target of the compact-agent work in one invocation.

Runs, one after the other: the bare fan-out floor, the etcd peer and lockd with the same
N agents (`propagation --with-baseline --peer etcd`), lockd with the large fleet,
`agent-apply` with the view's locks, and the cold starts; then one more result,
`targets`, with each target's figure, its limit and whether it is met. A target whose
figure is missing (etcd not installed) is reported with `met` null and a note.

With `rounds` > 1 the whole set runs that many times, each round with its verdict, and a
last result, `targets-median`, gives each target's median over the rounds, its least and
greatest figure, and whether the median meets the limit: on a machine whose figures
swing between runs, one run's verdict is a draw.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lockd.bench.procs import Reaper
from lockd.bench.report import Result, Value
from lockd.bench.scenarios.agent_apply import ApplyParams, agent_apply
from lockd.bench.scenarios.common import Common
from lockd.bench.scenarios.propagation import FanOutParams, baseline, compare, etcd, propagation
from lockd.bench.scenarios.resync import ResyncParams, snapshot

# The cold starts the targets name: (agents, locks) → seconds until all are SYNCED.
COLD_LIMITS = {(100, 10_000): 2.0, (1000, 1000): 5.0}


@dataclass(frozen=True, slots=True)
class TargetParams:
    fleet: FanOutParams  # the targets' 1,000 agents
    big_fleet: FanOutParams  # the targets' 10,000 agents
    apply: ApplyParams  # the targets' 100k locks
    # (agents, locks) of each cold start
    cold: tuple[tuple[int, int], ...] = ((100, 10_000), (1000, 1000))
    cold_procs: int = 2
    rounds: int = 1  # the whole set, run this many times (medians when more than one)


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # the verdict's figure key
    limit: float | None  # met when the figure is at most this (None: no target, a figure)
    figure: Callable[[dict[str, Result]], Value]


def _ratio(ours: Value, theirs: Value) -> Value:
    if isinstance(ours, int | float) and isinstance(theirs, int | float) and theirs > 0:
        return round(float(ours) / float(theirs), 2)
    return None


def _cold(index: int) -> Callable[[dict[str, Result]], Value]:
    return lambda runs: runs[f"cold{index}"].figures.get("all_synced_s")


def targets_of(params: TargetParams) -> list[Target]:
    """The targets, each read from the runs by name (`fleet`, `floor`, `peer`, `big`,
    `apply`, `cold0`…)."""
    found = [
        Target("p99_vs_etcd", 1.0, lambda r: r["fleet"].figures.get("vs_etcd_last_p99")),
        Target("p99_vs_floor", 1.3, lambda r: r["fleet"].figures.get("vs_baseline_last_p99")),
        Target("big_fleet_p99_ms", 1000.0, lambda r: r["big"].figures.get("last_p99_ms")),
        Target(
            "server_cpu_vs_floor",
            1.2,
            lambda r: _ratio(
                r["fleet"].figures.get("server_cpu_ms_per_lock"),
                r["floor"].figures.get("server_cpu_ms_per_lock"),
            ),
        ),
        Target("confirmed_p99_ms", 300.0, lambda r: r["fleet"].figures.get("confirmed_p99_ms")),
        Target("agent_rss_mb", 60.0, lambda r: r["apply"].figures.get("rss_mb")),
        Target("rss_per_lock_b", 300.0, lambda r: r["apply"].figures.get("rss_per_lock_b")),
        Target("event_us", 15.0, lambda r: r["apply"].figures.get("event_us")),
    ]
    for index, (agents, locks) in enumerate(params.cold):
        limit = COLD_LIMITS.get((agents, locks))
        found.append(Target(f"cold_{agents}x{locks}_s", limit, _cold(index)))
    return found


async def targets(reaper: Reaper, params: TargetParams, common: Common) -> list[Result]:
    results: list[Result] = []
    verdicts = []
    for _ in range(params.rounds):
        runs = await _round(reaper, params, common)
        verdicts.append(verdict(params, runs))
        results.extend([*runs.values(), verdicts[-1]])
    if params.rounds > 1:
        results.append(median_verdict(params, verdicts))
    return results


async def _round(reaper: Reaper, params: TargetParams, common: Common) -> dict[str, Result]:
    runs: dict[str, Result] = {}
    runs["floor"] = await baseline(reaper, params.fleet)
    runs["peer"] = await etcd(reaper, params.fleet)
    runs["fleet"] = await propagation(reaper, params.fleet, common)
    compare(runs["fleet"], runs["floor"])
    compare(runs["fleet"], runs["peer"], "etcd")
    runs["big"] = await propagation(reaper, params.big_fleet, common)
    runs["apply"] = await agent_apply(reaper, params.apply)
    for index, (agents, locks) in enumerate(params.cold):
        shape = ResyncParams(agents, locks, params.cold_procs)
        runs[f"cold{index}"] = await snapshot(reaper, shape, common)
    return runs


def verdict(params: TargetParams, runs: dict[str, Result]) -> Result:
    """Each target's figure, `<name>_limit` and `<name>_met` (null: no figure, or a
    shape the targets do not name)."""
    result = Result("targets", _shape(params))
    for target in targets_of(params):
        figure = target.figure(runs)
        _judge(result, target, figure)
        if not isinstance(figure, int | float):
            result.notes.append(f"{target.name}: no figure (the run it comes from says why)")
    return result


def median_verdict(params: TargetParams, verdicts: Sequence[Result]) -> Result:
    """Each target's median over the rounds' verdicts, `<name>_min`, `<name>_max`,
    `<name>_limit` and `<name>_met` (the median against the limit); the rounds without
    a figure are left out, and said."""
    result = Result("targets-median", {**_shape(params), "rounds": len(verdicts)})
    for target in targets_of(params):
        figures = [
            float(figure)
            for figure in (one.figures.get(target.name) for one in verdicts)
            if isinstance(figure, int | float)
        ]
        median = round(statistics.median(figures), 2) if figures else None
        _judge(result, target, median)
        result.figures[f"{target.name}_min"] = min(figures, default=None)
        result.figures[f"{target.name}_max"] = max(figures, default=None)
        if len(figures) < len(verdicts):
            missing = len(verdicts) - len(figures)
            result.notes.append(f"{target.name}: no figure in {missing} of {len(verdicts)} rounds")
    return result


def _shape(params: TargetParams) -> dict[str, Value]:
    return {
        "agents": params.fleet.agents,
        "big_agents": params.big_fleet.agents,
        "view_locks": params.apply.locks,
    }


def _judge(result: Result, target: Target, figure: Value) -> None:
    met = None
    if isinstance(figure, int | float) and target.limit is not None:
        met = float(figure) <= target.limit
    result.figures[target.name] = figure
    result.figures[f"{target.name}_limit"] = target.limit
    result.figures[f"{target.name}_met"] = met

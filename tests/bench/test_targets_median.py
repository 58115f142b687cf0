"""`lockd bench targets --rounds N`: the verdict over several rounds is each target's
median, with its least and greatest figure, judged against the limit."""

from __future__ import annotations

import subprocess
import sys

from lockd.bench.report import Result, Value
from lockd.bench.scenarios.agent_apply import ApplyParams
from lockd.bench.scenarios.propagation import FanOutParams
from lockd.bench.scenarios.targets import TargetParams, median_verdict, targets_of

PARAMS = TargetParams(FanOutParams(1000, 100, 2), FanOutParams(10_000, 20, 4), ApplyParams())


def round_verdict(**figures: Value) -> Result:
    """A round's verdict: the given figures, every other target without one."""
    result = Result("targets", {})
    for target in targets_of(PARAMS):
        result.figures[target.name] = figures.get(target.name)
    return result


def test_the_median_of_the_rounds_is_judged_against_the_limit() -> None:
    """Three rounds of 1.4, 1.1 and 1.25 × the floor: median 1.25 against 1.3, met,
    with 1.1 and 1.4 as the least and greatest; one round over the limit does not
    decide it."""
    verdicts = [round_verdict(p99_vs_floor=figure) for figure in (1.4, 1.1, 1.25)]
    result = median_verdict(PARAMS, verdicts)
    assert result.scenario == "targets-median"
    assert result.params["rounds"] == 3
    figures = result.figures
    assert (figures["p99_vs_floor"], figures["p99_vs_floor_limit"]) == (1.25, 1.3)
    assert figures["p99_vs_floor_met"] is True
    assert (figures["p99_vs_floor_min"], figures["p99_vs_floor_max"]) == (1.1, 1.4)


def test_rounds_without_a_figure_are_left_out_and_said() -> None:
    """A target measured in two rounds of three (etcd missing once): the median of the
    two, and a note; a target never measured has no figure and no verdict."""
    verdicts = [
        round_verdict(p99_vs_etcd=1.5, event_us=9.0),
        round_verdict(p99_vs_etcd=None, event_us=10.0),
        round_verdict(p99_vs_etcd=2.5, event_us=20.0),
    ]
    figures = median_verdict(PARAMS, verdicts).figures
    assert (figures["p99_vs_etcd"], figures["p99_vs_etcd_met"]) == (2.0, False)
    assert (figures["event_us"], figures["event_us_met"]) == (10.0, True)
    assert (figures["agent_rss_mb"], figures["agent_rss_mb_met"]) == (None, None)
    assert (figures["agent_rss_mb_min"], figures["agent_rss_mb_max"]) == (None, None)
    notes = median_verdict(PARAMS, verdicts).notes
    assert "p99_vs_etcd: no figure in 1 of 3 rounds" in notes
    assert "agent_rss_mb: no figure in 3 of 3 rounds" in notes


def test_zero_rounds_is_a_usage_error() -> None:
    """--rounds 0 exits 2 with the reason, before anything starts."""
    refused = subprocess.run(
        [sys.executable, "-m", "lockd", "bench", "targets", "--rounds", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--rounds is how many times everything runs: 1 or more" in refused.stderr

"""`lockd bench failover` and `propagation --replicas`: smoke tests of the replica scenarios.

Two `lockd auth` replicas on the bench's own throwaway PostgreSQL, four agents; checks
that the run exits 0 with the documented figures and leaves nothing behind. No timing is
asserted (tests/bench/test_smoke.py says why); what is asserted does not depend on load:
the leader was the replica killed and every agent resumed on the survivor; the agents of
the replicated propagation run sat on both replicas.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lockd.bench.pgserver import prerequisite_problem
from tests.bench.test_smoke import FAN_OUT, RUN_TIMEOUT, bench, check_fields

pytestmark = pytest.mark.slow

FAILOVER = ("all_synced_s", "resumed_share", "snapshots", "lease_takeover_s")


def _needs_postgres() -> None:
    problem = prerequisite_problem()
    if problem is not None:
        pytest.skip(problem)


def test_propagation_across_replicas_is_compared_with_one_replica(tmp_path: Path) -> None:
    """propagation --replicas 2 runs one replica, then two with the agents spread over both
    (half of them on the replica that did not take the CreateLock), and compares the two."""
    _needs_postgres()
    results = bench(
        tmp_path, "propagation", "--store", "postgres", "--replicas", "2",
        "--agents", "4", "--procs", "2", "--locks", "2", "--warmup", "1",
    )  # fmt: skip
    single, spread = results
    check_fields(single, "propagation", FAN_OUT)
    figures = check_fields(
        spread,
        "propagation",
        (*FAN_OUT, "agents_on_other_replicas", "vs_single_replica_last_p99"),
    )
    assert isinstance(single["params"], dict)
    assert isinstance(spread["params"], dict)
    assert "replicas" not in single["params"]
    assert spread["params"]["replicas"] == 2
    assert figures["agents_on_other_replicas"] == 2


def test_propagation_refuses_replicas_without_a_shared_store(tmp_path: Path) -> None:
    """propagation --replicas 2 on the default SQLite store exits 2 with a clear message
    and starts nothing."""
    run = subprocess.run(
        [sys.executable, "-m", "lockd", "bench", "propagation", "--replicas", "2"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert run.returncode == 2, run.stderr
    assert "--replicas 2 needs --store postgres" in run.stderr
    assert "Traceback" not in run.stderr


def test_failover_kills_the_leader_and_every_agent_resumes_on_the_survivor(
    tmp_path: Path,
) -> None:
    """failover --replicas 2 --agents 4: the leader killed, all four agents resumed."""
    _needs_postgres()
    (result,) = bench(tmp_path, "failover", "--store", "postgres", "--agents", "4", "--procs", "1")
    figures = check_fields(result, "failover", FAILOVER)
    assert result["params"] == {"agents": 4, "procs": 1, "replicas": 2}
    assert figures["killed_leader"] is True
    assert (figures["resumed_share"], figures["snapshots"]) == (1.0, 0)

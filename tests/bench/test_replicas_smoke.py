"""`lockd bench failover`: the smoke test of the replica scenarios, at a tiny size.

Two `lockd auth` replicas on the bench's own throwaway PostgreSQL, four agents; checks
that the run exits 0 with the documented figures and leaves nothing behind. No timing is
asserted (tests/bench/test_smoke.py says why); what is asserted does not depend on load:
the leader was the replica killed and every agent resumed on the survivor.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lockd.bench.pgserver import prerequisite_problem
from tests.bench.test_smoke import bench, check_fields

pytestmark = pytest.mark.slow

FAILOVER = ("all_synced_s", "resumed_share", "snapshots", "lease_takeover_s")


def test_failover_kills_the_leader_and_every_agent_resumes_on_the_survivor(
    tmp_path: Path,
) -> None:
    """failover --replicas 2 --agents 4: the leader killed, all four agents resumed."""
    problem = prerequisite_problem()
    if problem is not None:
        pytest.skip(problem)
    (result,) = bench(tmp_path, "failover", "--store", "postgres", "--agents", "4", "--procs", "1")
    figures = check_fields(result, "failover", FAILOVER)
    assert result["params"] == {"agents": 4, "procs": 1, "replicas": 2}
    assert figures["killed_leader"] is True
    assert (figures["resumed_share"], figures["snapshots"]) == (1.0, 0)

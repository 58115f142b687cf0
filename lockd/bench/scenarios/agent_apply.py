"""`agent-apply`: an agent's own Python per lock and its memory, with nothing else running.

One worker process (`lockd.bench.apply_probe`) holds one real `AgentRuntime` and feeds
it the auth server's encoding of a snapshot of `--locks` locks, then `--rounds` rounds
of `--events` one-lock event batches, parsed and converted as the agent's watcher does.
No gRPC and no other process competes: the figures are what the agent's code costs per
lock (the propagation and snapshot scenarios put every agent on the server's cores).
"""

from __future__ import annotations

from dataclasses import dataclass

from lockd.bench.procs import Reaper
from lockd.bench.report import Result
from lockd.bench.scenarios.common import close_workers
from lockd.bench.wire import Worker

RUN_TIMEOUT = 600.0
FIGURES = (
    "event_us",
    "event_us_median",
    "snapshot_us_per_lock",
    "idle_rss_mb",
    "rss_mb",
    "rss_per_lock_b",
    "rss_end_mb",
    "view_locks",
)


@dataclass(frozen=True, slots=True)
class ApplyParams:
    locks: int = 100_000
    events: int = 20_000
    rounds: int = 5


async def agent_apply(reaper: Reaper, params: ApplyParams) -> Result:
    result = Result(
        "agent-apply",
        {"locks": params.locks, "events": params.events, "rounds": params.rounds},
    )
    worker = await Worker.start(reaper, "apply", "apply", [])
    try:
        await worker.event("ready", 60.0)
        reply = await worker.call(
            "run", RUN_TIMEOUT, locks=params.locks, events=params.events, rounds=params.rounds
        )
        result.update({key: reply[key] for key in FIGURES})
    finally:
        await close_workers(reaper, [worker])
    return result

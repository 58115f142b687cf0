"""`check`: CheckAccess throughput and latency — over the Unix socket and in-process.

Socket: one real node agent (`agent-host`) holding L locks answers CheckAccess from
checker processes keeping C calls in flight; then the same checkers drive a bare
grpc.aio unary server on another Unix socket that returns pre-built bytes (the unary
transport floor). The request is the same pre-serialised message either way.

In-process: `AgentRuntime.check_access` (what the AgentService handler calls: decision,
metrics) and `LocalView.decide` alone, in a loop, on a view holding L locks.

Sidecar-local: a checker process connects with `local_view=True`, waits until the
agent has streamed its L locks into the copy, then calls `check_access_local` in a loop
(the decision a sidecar makes in its own process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from lockd.agent.persist import ViewOwner
from lockd.agent.runtime import AgentRuntime
from lockd.bench.authproc import seed_lock
from lockd.bench.fleet import NullAuditSink
from lockd.bench.procs import Reaper, cpu_seconds
from lockd.bench.report import Result, Value, latency_summary
from lockd.bench.scenarios.common import Common, close_workers, split, start_auth, start_workers
from lockd.bench.scenarios.terminate import start_agent
from lockd.bench.wire import Worker
from lockd.domain.identity import Identity
from lockd.domain.ports import SystemClock
from lockd.domain.view import LocalView, ViewSettings
from lockd.obs.metrics import AgentMetrics


@dataclass(frozen=True, slots=True)
class CheckParams:
    locks: int = 1000
    concurrency: int = 50
    seconds: float = 5.0
    warmup: float = 1.0
    procs: int = 1


def _rate(calls: int, seconds: float) -> float:
    return round(calls / seconds, 1) if seconds > 0 else 0.0


def in_process(locks: int, seconds: float) -> dict[str, Value]:
    """Checks per second on a SYNCED view with `locks` locks (none hits the checker)."""
    now = datetime.now(UTC)
    view = LocalView(ViewSettings("bench-host"))
    resources = [replace(seed_lock(index), created_at=now) for index in range(locks)]
    clock = SystemClock()
    view.apply_snapshot("bench-epoch", locks, resources, clock.monotonic(), now)
    view.set_connected(True)
    metrics = AgentMetrics(CollectorRegistry())
    runtime = AgentRuntime(
        view, clock, NullAuditSink(), metrics, ViewOwner("bench.lockd", "bench-host"), None
    )
    identity = Identity(user="checker", roles=("dev",), login="root")

    def decide() -> object:
        return view.decide(identity, clock.monotonic(), clock.now())

    return {
        "inprocess_checks_per_s": _loop(lambda: runtime.check_access(identity), seconds),
        "inprocess_decide_per_s": _loop(decide, seconds),
    }


def _loop(call: Callable[[], object], seconds: float) -> float:
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while (now := time.perf_counter()) < deadline:
        for _ in range(1000):
            call()
        count += 1000
    return round(count / (now - started), 1)


async def drive_checkers(
    checkers: list[Worker], socket: str, params: CheckParams, server_pid: int
) -> dict[str, float]:
    """Run the checkers against `socket` for `params.seconds`: rate, p50/p99 (ms), and
    the CPU seconds of the process serving it."""
    cpu_before = cpu_seconds(server_pid)
    replies = await asyncio.gather(
        *(
            checker.call(
                "run",
                within=params.seconds + params.warmup + 60,
                socket=socket,
                seconds=params.seconds,
                warmup=params.warmup,
            )
            for checker in checkers
        )
    )
    cpu = cpu_seconds(server_pid) - cpu_before
    latencies = [us / 1e6 for reply in replies for us in reply["latencies_us"]]
    calls = sum(int(reply["calls"]) for reply in replies)
    summary = latency_summary("x", latencies)
    return {
        "rate": _rate(calls, params.seconds),
        "p50": float(summary["x_p50_ms"] or 0.0),
        "p99": float(summary["x_p99_ms"] or 0.0),
        "cpu": round(cpu, 2),
    }


async def check(reaper: Reaper, params: CheckParams, common: Common) -> Result:
    result = Result(
        "check",
        {
            "locks": params.locks,
            "concurrency": params.concurrency,
            "seconds": params.seconds,
            "procs": params.procs,
            "store": common.store,
        },
    )
    result.update(await asyncio.to_thread(in_process, params.locks, min(params.seconds, 3.0)))
    auth = await start_auth(reaper, common, seed=params.locks)
    workers: list[Worker] = []
    try:
        agent = await start_agent(reaper, auth.address, params.locks)
        workers.append(agent)
        bare_socket = str(reaper.workdir / "bare.sock")
        bare = await Worker.start(reaper, "bare-unary", "bare-unary", ["--socket", bare_socket])
        workers.append(bare)
        await bare.event("ready", 60.0)
        sizes = split(params.concurrency, params.procs)
        checkers = []
        for index, size in enumerate(sizes):
            checkers += await start_workers(
                reaper, "checker", [1], ["--concurrency", str(size)], f"c{index}-"
            )
        workers += checkers
        ours = await drive_checkers(
            checkers, str(reaper.workdir / "agent" / "agent.sock"), params, agent.pid
        )
        floor = await drive_checkers(checkers, bare_socket, params, bare.pid)
        local = await checkers[0].call(
            "local",
            within=params.seconds + 300 + params.locks / 500,
            socket=str(reaper.workdir / "agent" / "agent.sock"),
            seconds=params.seconds,
            locks=params.locks,
        )
        result.add(
            socket_checks_per_s=ours["rate"],
            socket_p50_ms=ours["p50"],
            socket_p99_ms=ours["p99"],
            socket_agent_cpu_s=ours["cpu"],
            bare_checks_per_s=floor["rate"],
            bare_p50_ms=floor["p50"],
            bare_p99_ms=floor["p99"],
            bare_server_cpu_s=floor["cpu"],
            socket_vs_bare=round(ours["rate"] / floor["rate"], 3) if floor["rate"] else None,
            sidecar_local_checks_per_s=float(local["checks_per_s"]),
            sidecar_view_load_s=float(local["loaded_s"]),
        )
    finally:
        await close_workers(reaper, workers)
        await auth.close()
    return result

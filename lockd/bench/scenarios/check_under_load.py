"""`check-under-load`: CheckAccess latency on an agent while locks are written at a
fixed rate, against the same agent idle.

One real node agent (`agent-host`, persisting its view) holds L locks; checker
processes keep C CheckAccess calls in flight on its Unix socket, first with nothing
happening (idle), then while writers create locks on the auth server at R per second
(each new lock reaches the agent as an event batch it applies and saves). The figure
that matters is check p99 under load against the idle p99: applying batches must not
stall the agent's socket (docs/agent.md, "Large batches").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from lockd.bench.bare import probe_lock
from lockd.bench.procs import Reaper
from lockd.bench.report import Result
from lockd.bench.scenarios.check import CheckParams, drive_checkers
from lockd.bench.scenarios.common import Common, close_workers, start_auth, start_workers
from lockd.bench.scenarios.terminate import start_agent
from lockd.bench.wire import Worker
from lockd.client import AuthClient

# Lock names of the writers start here (the seeded locks and probes use lower numbers).
FIRST_WRITTEN = 500_000


@dataclass(frozen=True, slots=True)
class LoadParams:
    locks: int = 1000
    concurrency: int = 20
    seconds: float = 5.0
    warmup: float = 1.0
    rate: float = 200.0  # creates per second while loaded
    writers: int = 8  # concurrent CreateLock callers sharing the rate


async def _write(
    client: AuthClient, rate: float, offset: int, step: int, stop: asyncio.Event
) -> int:
    """Create locks at `rate` per second until `stop`; the number created."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate
    due = loop.time()
    count = 0
    while not stop.is_set():
        await client.create_lock(probe_lock(FIRST_WRITTEN + offset + count * step))
        count += 1
        due += interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    return count


async def check_under_load(reaper: Reaper, params: LoadParams, common: Common) -> Result:
    result = Result(
        "check-under-load",
        {
            "locks": params.locks,
            "concurrency": params.concurrency,
            "seconds": params.seconds,
            "rate": params.rate,
            "store": common.store,
        },
    )
    auth = await start_auth(reaper, common, seed=params.locks)
    workers: list[Worker] = []
    try:
        agent = await start_agent(reaper, auth.address, params.locks)
        workers.append(agent)
        checkers = await start_workers(
            reaper, "checker", [1], ["--concurrency", str(params.concurrency)], "c-"
        )
        workers += checkers
        socket = str(reaper.workdir / "agent" / "agent.sock")
        check = CheckParams(params.locks, params.concurrency, params.seconds, params.warmup)
        idle = await drive_checkers(checkers, socket, check, agent.pid)

        stop = asyncio.Event()
        client = auth.admin()
        share = params.rate / params.writers
        writers = [
            asyncio.create_task(_write(client, share, index, params.writers, stop))
            for index in range(params.writers)
        ]
        try:
            loaded = await drive_checkers(checkers, socket, check, agent.pid)
        finally:
            stop.set()
        created = sum(await asyncio.gather(*writers))
        measured = params.seconds + params.warmup
        result.add(
            idle_checks_per_s=idle["rate"],
            idle_p50_ms=idle["p50"],
            idle_p99_ms=idle["p99"],
            loaded_checks_per_s=loaded["rate"],
            loaded_p50_ms=loaded["p50"],
            loaded_p99_ms=loaded["p99"],
            creates_per_s=round(created / measured, 1),
            p99_vs_idle=round(loaded["p99"] / idle["p99"], 2) if idle["p99"] else None,
            agent_cpu_idle_s=idle["cpu"],
            agent_cpu_loaded_s=loaded["cpu"],
        )
    finally:
        await close_workers(reaper, workers)
        await auth.close()
    return result

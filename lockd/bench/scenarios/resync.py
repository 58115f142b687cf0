"""`reconnect` and `snapshot`: agents (re)joining an auth server.

reconnect: N SYNCED agents; the auth server is stopped (SIGTERM: every stream gets
Reset(shutdown)) and started again on the same port and data directory. Reported: how
long the server was away, the time from the new server SERVING until every agent is
SYNCED again, and the share of agents that resumed from their revision without a
snapshot (a SQLite store keeps its epoch across the restart; a memory store cannot).

snapshot: a cold start — N fresh agents connect at once to a server holding L locks;
time until each, and all, are SYNCED (snapshots are capped at 64 in flight; the others
are told to retry: `Reset(overloaded)`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lockd.bench.bare import probe_lock
from lockd.bench.procs import Reaper
from lockd.bench.report import Result, latency_summary, mb
from lockd.bench.scenarios.common import (
    Common,
    all_resynced,
    applied,
    close_workers,
    connect_and_sync,
    last_resynced_at,
    settle,
    split,
    start_auth,
    start_workers,
    sync_timeout,
    total_cpu,
    total_rss,
)
from lockd.bench.wire import Worker


@dataclass(frozen=True, slots=True)
class ResyncParams:
    agents: int = 100
    locks: int = 0
    procs: int = 2


async def reconnect(reaper: Reaper, params: ResyncParams, common: Common) -> Result:
    result = Result(
        "reconnect", {"agents": params.agents, "procs": params.procs, "store": common.store}
    )
    auth = await start_auth(reaper, common, seed=params.locks)
    workers: list[Worker] = []
    try:
        sizes = split(params.agents, params.procs)
        workers = await start_workers(reaper, "agents", sizes, ["--auth", auth.address], "r")
        await connect_and_sync(workers, params.agents)
        # A revision past 0, applied everywhere: what the agents resume from.
        client = auth.admin()
        revision = (await client.status()).revision
        for worker in workers:
            await worker.call("track", from_rev=revision + 1)
        _, revision = await client.create_lock(probe_lock(0))
        await applied(workers, revision, sync_timeout(params.agents))
        await settle()
        for worker in workers:
            await worker.call("mark")
        stopping = time.monotonic()
        await auth.stop()
        ready = await auth.start()
        statuses = await all_resynced(workers, params.agents, ready)
        synced = last_resynced_at(statuses)
        snapshots = sum(int(status["snapshots"]) for status in statuses)
        result.add(
            restart_s=round(ready - stopping, 2),
            resync_all_s=round(synced - ready, 2),
            total_s=round(synced - stopping, 2),
            resumed_share=round(1 - snapshots / params.agents, 4),
            snapshots=snapshots,
        )
    finally:
        await close_workers(reaper, workers)
        await auth.close()
    return result


async def snapshot(reaper: Reaper, params: ResyncParams, common: Common) -> Result:
    result = Result(
        "snapshot",
        {
            "agents": params.agents,
            "locks": params.locks,
            "procs": params.procs,
            "store": common.store,
        },
    )
    auth = await start_auth(reaper, common, seed=params.locks)
    workers: list[Worker] = []
    try:
        sizes = split(params.agents, params.procs)
        workers = await start_workers(reaper, "agents", sizes, ["--auth", auth.address], "s")
        idle_rss = total_rss([worker.pid for worker in workers])
        cpu_before = auth.cpu()
        started, synced = await connect_and_sync(workers, params.agents)
        cpu = auth.cpu() - cpu_before
        grown = total_rss([worker.pid for worker in workers]) - idle_rss
        result.update(latency_summary("synced", [at - started for at in synced]))
        result.add(
            all_synced_s=round(max(synced) - started, 2),
            server_cpu_s=round(cpu, 2),
            server_rss_mb=mb(auth.rss()),
            agents_rss_mb=mb(total_rss([worker.pid for worker in workers])),
            rss_per_agent_kb=round(grown / 1024 / max(1, params.agents), 1),
            # What a lock costs an agent (its streams and channels included: run with
            # many locks and few agents to read the locks' share).
            rss_per_lock_b=round(grown / max(1, params.agents * params.locks)),
            agents_cpu_s=round(total_cpu([worker.pid for worker in workers]), 2),
        )
    finally:
        await close_workers(reaper, workers)
        await auth.close()
    return result

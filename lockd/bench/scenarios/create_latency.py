"""`create`: CreateLock latency on the chosen store, one call at a time.

Each call goes over the admin socket and returns once the lock is durable (SQLite: WAL
with synchronous=FULL, so an fsync per commit) and handed to the replication hub. No
agents are connected: this is the write path alone. With `replicas` > 1 (PostgreSQL),
the calls go to the first replica while the others run and tail the shared log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from lockd.bench.procs import Reaper
from lockd.bench.report import Result, latency_summary
from lockd.bench.scenarios.common import Common
from lockd.bench.scenarios.replica_launch import close_replicas, start_replicas
from lockd.domain.lock import Lock, LockTarget


@dataclass(frozen=True, slots=True)
class CreateParams:
    locks: int = 200
    warmup: int = 10
    replicas: int = 1


async def create(reaper: Reaper, params: CreateParams, common: Common) -> Result:
    result = Result("create", {"locks": params.locks, "store": common.store})
    if params.replicas > 1:
        result.params["replicas"] = params.replicas
    replicas = await start_replicas(reaper, common, params.replicas)
    auth = replicas[0]
    try:
        client = auth.admin()
        latencies = []
        cpu_before = auth.cpu()
        started = time.monotonic()
        for index in range(params.warmup + params.locks):
            if index == params.warmup:
                cpu_before, started = auth.cpu(), time.monotonic()
            lock = Lock(f"create-{index:06d}", LockTarget(user=f"create-user-{index}"))
            sent = time.monotonic()
            await client.create_lock(lock)
            if index >= params.warmup:
                latencies.append(time.monotonic() - sent)
        elapsed = time.monotonic() - started
        cpu = auth.cpu() - cpu_before
        result.update(latency_summary("create", latencies))
        result.add(
            creates_per_s=round(params.locks / elapsed, 1) if elapsed > 0 else None,
            server_cpu_ms_per_create=round(cpu * 1000 / max(1, params.locks), 3),
        )
    finally:
        await close_replicas(replicas)
    return result

"""`failover`: the leading replica of N is killed; how fast its agents are SYNCED again.

N replicas (`--replicas`, at least 2) on one PostgreSQL; every agent lists them in the
same order, so all are on the first replica, which also holds the reaper's lease. Once
they applied a lock, the first replica gets SIGKILL (no Reset, no lease handed on: a
crash). Reported: the time from the kill until every agent is SYNCED on a survivor, the
share that resumed from its revision without a snapshot (the epoch and the log are the
database's, so all of them should), and how long until a survivor held the lease.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from lockd.bench.authproc import AuthServer
from lockd.bench.bare import probe_lock
from lockd.bench.pgserver import PostgresServer
from lockd.bench.procs import Reaper
from lockd.bench.report import Result
from lockd.bench.scenarios.common import (
    Common,
    all_resynced,
    applied,
    close_workers,
    connect_and_sync,
    last_resynced_at,
    settle,
    split,
    start_workers,
    sync_timeout,
)
from lockd.bench.scenarios.replica_launch import (
    close_replicas,
    lease_holder,
    replica_id,
    start_replicas,
)
from lockd.bench.wire import Worker

POLL = 0.05
TAKEOVER_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class FailoverParams:
    agents: int = 100
    procs: int = 2
    replicas: int = 2


async def failover(reaper: Reaper, params: FailoverParams, common: Common) -> Result:
    result = Result(
        "failover",
        {"agents": params.agents, "procs": params.procs, "replicas": params.replicas},
    )
    replicas = await start_replicas(reaper, common, params.replicas)
    workers: list[Worker] = []
    try:
        leader, server = replicas[0], replicas[0].postgres
        assert server is not None
        addresses = ",".join(replica.address for replica in replicas)
        sizes = split(params.agents, params.procs)
        workers = await start_workers(reaper, "agents", sizes, ["--auth", addresses], "f")
        await connect_and_sync(workers, params.agents)
        client = replicas[1].admin()
        revision = (await client.status()).revision
        for worker in workers:
            await worker.call("track", from_rev=revision + 1)
        _, revision = await client.create_lock(probe_lock(0))
        await applied(workers, revision, sync_timeout(params.agents))
        await _replicas_at(replicas[1:], revision)  # a survivor behind its agents: no resume
        await settle()
        holder = await asyncio.to_thread(lease_holder, server)
        for worker in workers:
            await worker.call("mark")

        killed = time.monotonic()
        assert leader.process is not None
        leader.process.kill()
        await asyncio.to_thread(leader.process.wait)
        statuses, takeover = await asyncio.gather(
            all_resynced(workers, params.agents, killed),
            _lease_moved(server, replica_id(leader), killed),
        )
        synced = last_resynced_at(statuses)
        snapshots = sum(int(status["snapshots"]) for status in statuses)
        result.add(
            killed_leader=holder == replica_id(leader),
            all_synced_s=round(synced - killed, 2),
            resumed_share=round(1 - snapshots / params.agents, 4),
            snapshots=snapshots,
            lease_takeover_s=round(takeover - killed, 2),
        )
    finally:
        await close_workers(reaper, workers)
        await close_replicas(replicas)
    return result


async def _replicas_at(replicas: list[AuthServer], revision: int) -> None:
    """Until every one of `replicas` has tailed the log up to `revision`."""
    deadline = time.monotonic() + TAKEOVER_TIMEOUT
    for replica in replicas:
        while (await replica.admin().status()).revision < revision:
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica.address} did not reach {revision}")
            await asyncio.sleep(POLL)


async def _lease_moved(server: PostgresServer, dead: str, since: float) -> float:
    """When a replica other than `dead` held the reaper's lease (monotonic, polled)."""
    while True:
        holder = await asyncio.to_thread(lease_holder, server)
        if holder and holder != dead:
            return time.monotonic()
        if time.monotonic() > since + TAKEOVER_TIMEOUT:
            raise RuntimeError(f"no survivor took the reaper's lease in {TAKEOVER_TIMEOUT:g}s")
        await asyncio.sleep(POLL)

"""What the scenarios share: options, worker pools, waits and resource readings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lockd.bench.authproc import AuthServer, start_postgres
from lockd.bench.procs import Reaper, cpu_seconds, interrupted, rss_bytes
from lockd.bench.wire import Message, Worker, gather_events


@dataclass(frozen=True, slots=True)
class Common:
    """Options every scenario takes."""

    store: str = "sqlite"
    heartbeat: str = "5s"
    watch_workers: int = 1  # processes serving WatchLocks (auth_service.watch_workers)


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as possible (no empty part unless total < parts)."""
    parts = max(1, min(parts, total)) if total else 1
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


async def start_workers(
    reaper: Reaper,
    role: str,
    sizes: Sequence[int],
    args: Sequence[str],
    name: str,
    own_args: Sequence[Sequence[str]] = (),
) -> list[Worker]:
    """One worker per size (`--count size --prefix name<i>`), all ready; worker i also
    gets `own_args[i]` when given."""
    workers = [
        await Worker.start(
            reaper,
            f"{name}{index}",
            role,
            [
                *args,
                *(own_args[index] if own_args else ()),
                "--count",
                str(size),
                "--prefix",
                f"{name}{index}",
            ],
        )
        for index, size in enumerate(sizes)
    ]
    await gather_events(workers, "ready", within=120.0)
    return workers


async def close_workers(reaper: Reaper, workers: Sequence[Worker]) -> None:
    """Stop the workers: gracefully, or at once when the run is being interrupted."""
    grace = 0.0 if interrupted() else 5.0
    await asyncio.gather(*(worker.close(reaper, grace) for worker in workers))


async def connect_and_sync(workers: Sequence[Worker], agents: int) -> tuple[float, list[float]]:
    """Connect every worker's agents; (start time, each agent's first-SYNCED time)."""
    start = time.monotonic()
    for worker in workers:
        await worker.call("connect")
    synced = await gather_events(workers, "synced", within=sync_timeout(agents))
    return start, [at for event in synced for at in event["times"]]


def sync_timeout(agents: int) -> float:
    """Generous: a cold start of 10k agents on 2 cores takes a while."""
    return 120.0 + agents * 0.05


async def applied(workers: Sequence[Worker], revision: int, within: float) -> list[Message]:
    """Every worker's `applied` event for `revision` (skipping older ones)."""

    async def one(worker: Worker) -> Message:
        while True:
            event = await worker.event("applied", within)
            if int(event["rev"]) >= revision:
                return event

    return list(await asyncio.gather(*(one(worker) for worker in workers)))


async def all_resynced(workers: Sequence[Worker], agents: int, since: float) -> list[Message]:
    """The workers' statuses once every agent is SYNCED again after the mark; fails
    `sync_timeout(agents)` after `since` (monotonic)."""
    deadline = since + sync_timeout(agents)
    while True:
        statuses = await asyncio.gather(*(worker.call("status") for worker in workers))
        if sum(int(status["resynced"]) for status in statuses) >= agents:
            return list(statuses)
        if time.monotonic() > deadline:
            raise RuntimeError(f"agents did not all resync: {statuses}")
        await asyncio.sleep(0.05)


def last_resynced_at(statuses: Sequence[Message]) -> float:
    """When the last agent was SYNCED again (monotonic)."""
    return max(float(status["last_resynced_at"]) for status in statuses)


def total_cpu(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def total_rss(pids: Sequence[int]) -> int:
    return sum(rss_bytes(pid) for pid in pids)


async def start_auth(reaper: Reaper, common: Common, seed: int = 0) -> AuthServer:
    """A started `lockd auth` holding `seed` locks (seeded fast for SQLite); for postgres
    on a throwaway server of its own, removed by `AuthServer.close`."""
    postgres = None
    if common.store == "postgres":
        postgres = await asyncio.to_thread(start_postgres)
    # One directory per worker count: `--watch-workers 1,2,4` starts three servers in a run.
    name = "auth" if common.watch_workers == 1 else f"auth-{common.watch_workers}-workers"
    auth = AuthServer(reaper, common.store, common.heartbeat, postgres, name, common.watch_workers)
    if seed and common.store == "sqlite":
        await asyncio.to_thread(auth.seed_sqlite, seed)
    await auth.start()
    if seed and common.store != "sqlite":
        await auth.seed_rpc(seed)
    return auth


def server_pids(auth: AuthServer) -> list[int]:
    """The `lockd auth` process and its watch workers."""
    try:
        children = Path(f"/proc/{auth.pid}/task/{auth.pid}/children").read_text().split()
    except FileNotFoundError:
        children = []
    return [auth.pid, *map(int, children)]


async def settle(seconds: float = 1.0) -> None:
    """Let acks, view saves and other after-effects finish before measuring."""
    await asyncio.sleep(seconds)

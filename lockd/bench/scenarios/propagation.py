"""`propagation` and `baseline`: how fast one lock reaches every agent.

propagation: N real agents (K worker processes) watch a real `lockd auth` (serving
WatchLocks from `watch_workers` processes: `--watch-workers 1,2,4` runs once per count,
the server's CPU and RSS summed over its processes); M locks are
created one at a time over the admin socket. For each, the time from the CreateLock call
to the moment its revision was applied by the first and by the last agent (nobody
waits: the agents ack at their heartbeat cadence). Then (real agents) M more, each as
`lockctl lock --wait` makes it (CreateLock asking for the acks): `confirmed`, from
CreateLock's return until the cluster status shows every agent having acknowledged it,
and `waited_last`, the last agent's latency while those acks come back.

With `light`, the agents are minimal clients that only parse each frame for its revision
(no view, no acks): the auth server's own share, without the agents' work — on a 2-core
machine the real agents compete with the server for the same cores.

baseline: the same harness over a bare grpc.aio server that fans the same-size frame out
(`lockd.bench.bare`): the transport floor the propagation figures are compared with.

replicas (`--replicas N`, on PostgreSQL): the same run on N auth replicas sharing one
database, each CreateLock sent to the first replica and the agent processes spread over
all of them (process i lists replica i mod N first), so most agents learn the lock from a
replica that only tailed it from the shared log; run after a one-replica run on the same
store, in the same invocation, and compared with it.

etcd (`--peer etcd`): the same harness against a throwaway local etcd
(`lockd.bench.etcd_peer`): one watcher of the probe key per agent, one connection each,
over the same processes; a Put instead of CreateLock, the timer started before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from lockd.bench.bare import probe_lock
from lockd.bench.etcd_peer import EtcdServer, find_etcd
from lockd.bench.procs import Reaper
from lockd.bench.report import Result, Value, latency_summary, mb
from lockd.bench.scenarios.common import (
    Common,
    applied,
    close_workers,
    connect_and_sync,
    server_pids,
    settle,
    split,
    start_workers,
    total_cpu,
    total_rss,
)
from lockd.bench.scenarios.replica_launch import close_replicas, start_replicas
from lockd.bench.wire import Worker
from lockd.client import AuthClient
from lockd.client.auth_client import WAIT_HOLD

APPLY_TIMEOUT = 120.0
CONFIRM_POLL = 0.02
# Agents ack at heartbeat cadence or when asked (no ack per change): a short pause lets
# each lock's fan-out finish before the next one, so each is measured on its own.
SETTLE = 0.2


@dataclass(frozen=True, slots=True)
class FanOutParams:
    agents: int = 100
    locks: int = 50
    procs: int = 2
    warmup: int = 3
    # Seconds between one lock being everywhere and the next CreateLock (None: SETTLE).
    gap: float | None = None
    light: bool = False  # minimal clients instead of real agents: the server alone
    replicas: int = 1  # auth replicas on one PostgreSQL; the agents spread over them
    floor_work: float = 0.0  # µs of CPU the bare floor's watchers spend on each frame

    def pause(self) -> float:
        if self.gap is not None:
            return self.gap
        return SETTLE + self.agents * 0.0001


class Publisher(Protocol):
    async def __call__(self, index: int) -> int:
        """Publish lock number `index`; return the revision (frame number) it got."""
        ...


async def _measure(
    publish: Publisher,
    workers: list[Worker],
    params: FanOutParams,
    server_pids: list[int],
    main_share: bool = False,
) -> dict[str, Value]:
    """Publish warmup + M items one at a time; first/last-applied latencies and CPU (of
    every server process: lockd's watch workers and replicas count). `main_share`: also
    the share of that CPU the first process (the auth process of watch workers) spent."""
    first: list[float] = []
    last: list[float] = []
    cpu_before = total_cpu(server_pids)
    main_cpu_before = total_cpu(server_pids[:1])
    workers_cpu_before = total_cpu([worker.pid for worker in workers])
    for index in range(params.warmup + params.locks):
        start = time.monotonic()
        revision = await publish(index)
        events = await applied(workers, revision, APPLY_TIMEOUT)
        if index >= params.warmup:
            first.append(min(float(event["first"]) for event in events) - start)
            last.append(max(float(event["last"]) for event in events) - start)
        await asyncio.sleep(params.pause())
    cpu = total_cpu(server_pids) - cpu_before
    workers_cpu = total_cpu([worker.pid for worker in workers]) - workers_cpu_before
    figures: dict[str, Value] = {
        **latency_summary("last", last),
        **latency_summary("first", first),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_ms_per_lock": round(cpu * 1000 / max(1, params.warmup + params.locks), 2),
        "agents_cpu_s": round(workers_cpu, 2),
    }
    if main_share:
        main_cpu = total_cpu(server_pids[:1]) - main_cpu_before
        figures["server_main_cpu_share"] = round(main_cpu / cpu, 2) if cpu else 0.0
    return figures


def _params(params: FanOutParams, common: Common | None) -> dict[str, Value]:
    values: dict[str, Value] = {
        "agents": params.agents,
        "locks": params.locks,
        "procs": params.procs,
    }
    if common is not None:
        values["store"] = common.store
        values["light"] = params.light
        if common.watch_workers != 1:  # the default run's parameters stay as they were
            values["watch_workers"] = common.watch_workers
        if params.replicas != 1:
            values["replicas"] = params.replicas
    return values


async def propagation(reaper: Reaper, params: FanOutParams, common: Common) -> Result:
    result = Result("propagation", _params(params, common))
    replicas = await start_replicas(reaper, common, params.replicas)
    workers: list[Worker] = []
    try:
        pids = [pid for replica in replicas for pid in server_pids(replica)]
        idle_rss = total_rss(pids)
        sizes = split(params.agents, params.procs)
        role = "light-agents" if params.light else "agents"
        addresses = [replica.address for replica in replicas]
        spread = [["--auth", ",".join(rotated(addresses, index))] for index in range(len(sizes))]
        workers = await start_workers(reaper, role, sizes, [], "a", spread)
        started, synced = await connect_and_sync(workers, params.agents)
        await settle()
        streams_rss = total_rss(pids)
        client = replicas[0].admin()
        revision = (await client.status()).revision
        for worker in workers:
            await worker.call("track", from_rev=revision + 1)

        async def create(index: int) -> int:
            _, committed = await client.create_lock(probe_lock(index))
            return committed

        result.update(await _measure(create, workers, params, pids, common.watch_workers != 1))
        if not params.light:  # minimal clients never ack
            result.update(await _confirm(client, workers, params))
        if params.replicas > 1:
            result.add(agents_on_other_replicas=await _on_other_replicas(client, params.agents))
        result.add(
            sync_all_s=round(max(synced) - started, 2),
            server_rss_mb=mb(total_rss(pids)),
            server_rss_idle_mb=mb(idle_rss),
            rss_per_stream_kb=round((streams_rss - idle_rss) / 1024 / max(1, params.agents), 1),
            agents_rss_mb=mb(total_rss([worker.pid for worker in workers])),
        )
    finally:
        await close_workers(reaper, workers)
        await close_replicas(replicas)
    return result


async def _confirm(
    client: AuthClient, workers: list[Worker], params: FanOutParams
) -> dict[str, Value]:
    """`lockctl lock --wait`'s path, as a second series of locks after the plain ones:
    CreateLock asking for the acks (await_ack), then the cluster status polled with
    await_revision until it shows every agent at the lock's revision. `confirmed`: from
    CreateLock's return until then; `waited_last`: CreateLock's call until the last
    agent applied the lock, while the acks come back (compare with `last`)."""
    confirmed: list[float] = []
    waited_last: list[float] = []
    first_index = params.warmup + params.locks  # names after the plain series'
    for index in range(params.warmup + params.locks):
        start = time.monotonic()
        _, revision = await client.create_lock(probe_lock(first_index + index), await_ack=True)
        since = time.monotonic()
        while True:
            status = await client.status(await_revision=revision, hold=WAIT_HOLD)
            acked = [a for a in status.agents if a.connected and a.applied_revision >= revision]
            if len(acked) >= params.agents:
                break
            if not status.hold_expired:  # not held (an agent not yet connected again)
                await asyncio.sleep(CONFIRM_POLL)
        done = time.monotonic()
        events = await applied(workers, revision, APPLY_TIMEOUT)
        if index >= params.warmup:
            confirmed.append(done - since)
            waited_last.append(max(float(event["last"]) for event in events) - start)
        await asyncio.sleep(params.pause())
    return {
        **latency_summary("confirmed", confirmed),
        **latency_summary("waited_last", waited_last),
    }


async def _on_other_replicas(client: AuthClient, agents: int) -> int:
    """How many agents the cluster status shows on a replica other than the one asked,
    once it shows all `agents` connected (the other replicas report every second)."""
    deadline = time.monotonic() + APPLY_TIMEOUT
    while True:
        status = await client.status()
        connected = [agent for agent in status.agents if agent.connected]
        if len(connected) >= agents or time.monotonic() > deadline:
            return sum(agent.replica_id != status.replica_id for agent in connected)
        await asyncio.sleep(CONFIRM_POLL)


def rotated(items: Sequence[str], start: int) -> list[str]:
    """`items` beginning at `start` (mod their number), in their circular order."""
    start %= len(items)
    return [*items[start:], *items[:start]]


async def _watch_and_measure(
    reaper: Reaper,
    params: FanOutParams,
    watchers: tuple[str, str, str],
    server_pid: int,
    publish: Publisher,
    track_from: int | None = None,
    work: Sequence[str] = (),
) -> dict[str, Value]:
    """The fan-out harness on a floor or peer server: `watchers` is (role, server
    address, name prefix) of the worker processes, `work` more of their arguments; their
    figures and the server's."""
    role, address, prefix = watchers
    workers: list[Worker] = []
    try:
        idle_rss = total_rss([server_pid])
        sizes = split(params.agents, params.procs)
        workers = await start_workers(reaper, role, sizes, ["--auth", address, *work], prefix)
        started, synced = await connect_and_sync(workers, params.agents)
        await settle()
        streams_rss = total_rss([server_pid])
        if track_from is not None:
            for worker in workers:
                await worker.call("track", from_rev=track_from)
        figures = await _measure(publish, workers, params, [server_pid])
        figures.update(
            sync_all_s=round(max(synced) - started, 2),
            server_rss_mb=mb(total_rss([server_pid])),
            server_rss_idle_mb=mb(idle_rss),
            rss_per_stream_kb=round((streams_rss - idle_rss) / 1024 / max(1, params.agents), 1),
            agents_rss_mb=mb(total_rss([worker.pid for worker in workers])),
        )
        return figures
    finally:
        await close_workers(reaper, workers)


async def baseline(reaper: Reaper, params: FanOutParams) -> Result:
    result = Result("baseline", _params(params, None))
    if params.floor_work:
        result.params["floor_work_us"] = params.floor_work
    server = await Worker.start(reaper, "fanout", "bare-fanout", [])
    try:
        ready = await server.event("ready", 60.0)

        async def publish(index: int) -> int:
            await server.call("publish", index=index)
            return index + 1

        watchers = ("bare-watchers", f"127.0.0.1:{ready['port']}", "b")
        work = ["--work-us", str(params.floor_work)]
        result.update(
            await _watch_and_measure(reaper, params, watchers, server.pid, publish, work=work)
        )
    finally:
        await close_workers(reaper, [server])
    return result


async def etcd(reaper: Reaper, params: FanOutParams) -> Result:
    """The etcd peer; without etcd (not installed, cannot install) a note says why."""
    result = Result("etcd", _params(params, None))
    binary, reason = await asyncio.to_thread(find_etcd)
    if binary is None:
        result.notes.append(f"etcd peer skipped: {reason}")
        return result
    server = EtcdServer(reaper, binary)
    try:
        ready_revision = await server.start()
        result.params["etcd"] = binary

        async def publish(index: int) -> int:
            return await server.put(f"lock {index}".encode())

        watchers = ("etcd-watchers", server.address, "e")
        figures = await _watch_and_measure(
            reaper, params, watchers, server.pid, publish, ready_revision + 1
        )
        result.update(figures)
    finally:
        await server.close()
    return result


def compare(propagated: Result, other: Result, name: str = "baseline") -> None:
    """Add the ratio of propagation's p99 (and p50) to the other run's (`vs_<name>_...`);
    a note when the other run has no figures (a skipped peer)."""
    if not other.figures:
        propagated.notes.append(f"no ratio to {name}: {'; '.join(other.notes) or 'no figures'}")
    for key in ("last_p99_ms", "last_p50_ms"):
        ours, theirs = propagated.figures.get(key), other.figures.get(key)
        if isinstance(ours, float) and isinstance(theirs, float) and theirs > 0:
            propagated.figures[f"vs_{name}_{key.removesuffix('_ms')}"] = round(ours / theirs, 2)

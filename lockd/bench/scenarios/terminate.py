"""`terminate`: from a lock event's arrival at an agent to every hit sidecar knowing.

One real node agent (`agent-host` worker) holds S sessions registered over its Unix
socket by sidecar processes; X of them belong to the user each round's lock targets.
Per round: create the lock; the agent reports when the event batch reached its runtime
(`arrived`); each sidecar reports when each of its matching sessions received the
terminate signal. Then the lock is deleted and the X sessions open again. Optional
`--locks L` background locks show the agent's memory with a large view.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from lockd.bench.host import VICTIM
from lockd.bench.procs import Reaper, cpu_seconds, rss_bytes
from lockd.bench.report import Result, latency_summary, mb
from lockd.bench.scenarios.common import (
    Common,
    close_workers,
    settle,
    split,
    start_auth,
    start_workers,
)
from lockd.bench.wire import Message, Worker
from lockd.domain.lock import Lock, LockTarget

ROUND_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class TerminateParams:
    sessions: int = 1000
    matching: int = 100
    rounds: int = 5
    locks: int = 0
    procs: int = 2


async def start_agent(reaper: Reaper, address: str, locks: int) -> Worker:
    """The `agent-host` worker, SYNCED with the auth server's `locks` locks."""
    directory = reaper.workdir / "agent"
    directory.mkdir(exist_ok=True)
    agent = await Worker.start(
        reaper, "agent", "agent-host", ["--auth", address, "--dir", str(directory)]
    )
    await agent.event("ready", 120.0)
    deadline = time.monotonic() + 120.0 + locks / 1000
    while True:
        status = await agent.call("status")
        if status["state"] == "synced" and status["locks"] >= locks:
            return agent
        if time.monotonic() > deadline:
            raise RuntimeError(f"the agent did not sync its {locks} locks: {status}")
        await asyncio.sleep(0.05)


async def events_until(agent: Worker, revision: int) -> Message:
    """The agent's `events` report for the batch that carried `revision`."""
    while True:
        event = await agent.event("events", ROUND_TIMEOUT)
        if int(event["last"]) >= revision:
            return event


async def terminate(reaper: Reaper, params: TerminateParams, common: Common) -> Result:
    result = Result(
        "terminate",
        {
            "sessions": params.sessions,
            "matching": params.matching,
            "rounds": params.rounds,
            "locks": params.locks,
            "procs": params.procs,
            "store": common.store,
        },
    )
    if not 0 < params.matching <= params.sessions:
        raise ValueError("--matching must be between 1 and --sessions")
    auth = await start_auth(reaper, common, seed=params.locks)
    workers: list[Worker] = []
    try:
        agent = await start_agent(reaper, auth.address, params.locks)
        workers.append(agent)
        idle_rss = rss_bytes(agent.pid)
        sidecars, hit = await _sidecars(reaper, params)
        workers += sidecars
        await settle()
        status = await agent.call("status")
        if status["sessions"] != params.sessions:
            raise RuntimeError(
                f"the agent holds {status['sessions']} sessions, not {params.sessions}"
            )
        rss = rss_bytes(agent.pid)
        each: list[float] = []
        last: list[float] = []
        from_create: list[float] = []
        cpu_before = cpu_seconds(agent.pid)
        client = auth.admin()
        for round_ in range(params.rounds):
            name = f"terminate-{round_}"
            started = time.monotonic()
            _, revision = await client.create_lock(Lock(name, LockTarget(user=VICTIM)))
            arrived = float((await events_until(agent, revision))["arrived"])
            reports = await asyncio.gather(
                *(worker.event("terminated", ROUND_TIMEOUT) for worker in hit)
            )
            times = [float(at) for report in reports for at in report["times"]]
            each += [at - arrived for at in times]
            last.append(max(times) - arrived)
            from_create.append(max(times) - started)
            removed = await client.delete_lock(name)
            await events_until(agent, removed)
            await asyncio.gather(*(worker.call("reopen", ROUND_TIMEOUT) for worker in sidecars))
            await settle(0.5)
        result.update(latency_summary("session", each))
        result.update(latency_summary("all", last))
        result.update(latency_summary("create_to_all", from_create))
        result.add(
            agent_cpu_s=round(cpu_seconds(agent.pid) - cpu_before, 2),
            agent_rss_mb=mb(rss),
            agent_rss_idle_mb=mb(idle_rss),
            agent_rss_end_mb=mb(rss_bytes(agent.pid)),
        )
    finally:
        await close_workers(reaper, workers[1:])
        await close_workers(reaper, workers[:1])
        await auth.close()
    return result


async def _sidecars(reaper: Reaper, params: TerminateParams) -> tuple[list[Worker], list[Worker]]:
    """Sidecar workers holding every session open, and those holding matching ones."""
    socket = str(reaper.workdir / "agent" / "agent.sock")
    sessions = split(params.sessions, params.procs)
    matching = split(params.matching, len(sessions))
    matching += [0] * (len(sessions) - len(matching))
    workers, hit = [], []
    for index, (count, hits) in enumerate(zip(sessions, matching, strict=True)):
        args = ["--socket", socket, "--matching", str(hits)]
        worker = (await start_workers(reaper, "sidecars", [count], args, f"s{index}-"))[0]
        workers.append(worker)
        if hits:
            hit.append(worker)
    await asyncio.gather(*(worker.call("open", ROUND_TIMEOUT) for worker in workers))
    return workers, hit

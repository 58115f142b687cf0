"""`terminate`: from a lock event's arrival at an agent to every hit sidecar knowing.

One real node agent (`agent-host` worker) holds S sessions registered over its Unix
socket by `--procs` sidecar processes, each with ONE SessionChannel carrying all of its
sessions; X of them belong to the user each round's lock targets. The registration of
all S from cold (a fresh agent, in batches, every sidecar at once) is timed too.
Per round: create the lock; the agent reports when the event batch reached its runtime
(`arrived`); each sidecar reports when each of its matching sessions received the
terminate signal. Then the lock is deleted and the X sessions open again. Optional
`--locks L` background locks show the agent's memory with a large view.
`--with-baseline` first runs the same rounds against a bare grpc.aio server holding the
same channels, which sends each one a single message with its victims' ids
(`lockd.bench.bare.BareChannels`): the transport floor of the same shape.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from lockd.bench.authproc import AuthServer
from lockd.bench.bare import VICTIM
from lockd.bench.procs import Reaper, cpu_seconds, rss_bytes
from lockd.bench.report import Result, Value, latency_summary, mb
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
    with_baseline: bool = False


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


class Target(Protocol):
    """What the sidecars' sessions are registered with, and how a round strikes them."""

    async def strike(self, round_: int) -> tuple[float, float, float | None]:
        """Hit the victim's sessions: when it was asked for, when the event arrived, and
        when the agent's synchronous step for it (apply, terminate, queue) ended."""
        ...

    async def clear(self, round_: int) -> None:
        """Undo the round's strike so the sessions can open again."""
        ...


class AgentTarget:
    """The real agent: a lock on the victim created, then deleted, on the auth server."""

    def __init__(self, auth: AuthServer, agent: Worker) -> None:
        self._client = auth.admin()
        self._agent = agent

    async def strike(self, round_: int) -> tuple[float, float, float | None]:
        started = time.monotonic()
        lock = Lock(f"terminate-{round_}", LockTarget(user=VICTIM))
        _, revision = await self._client.create_lock(lock)
        event = await events_until(self._agent, revision)
        return started, float(event["arrived"]), float(event["done"])

    async def clear(self, round_: int) -> None:
        removed = await self._client.delete_lock(f"terminate-{round_}")
        await events_until(self._agent, removed)


class BareTarget:
    """The bare session server: told over its pipe to end the victim's streams."""

    def __init__(self, server: Worker) -> None:
        self._server = server

    async def strike(self, round_: int) -> tuple[float, float, float | None]:
        started = time.monotonic()
        return started, float((await self._server.call("terminate"))["arrived"]), None

    async def clear(self, round_: int) -> None:
        pass


async def _rounds(
    target: Target, sidecars: list[Worker], hit: list[Worker], rounds: int
) -> dict[str, Value]:
    each: list[float] = []
    last: list[float] = []
    from_create: list[float] = []
    steps: list[float] = []
    for round_ in range(rounds):
        started, arrived, stepped = await target.strike(round_)
        if stepped is not None:
            steps.append(stepped - arrived)
        reports = await asyncio.gather(
            *(worker.event("terminated", ROUND_TIMEOUT) for worker in hit)
        )
        times = [float(at) for report in reports for at in report["times"]]
        each += [at - arrived for at in times]
        last.append(max(times) - arrived)
        from_create.append(max(times) - started)
        await target.clear(round_)
        await asyncio.gather(*(worker.call("reopen", ROUND_TIMEOUT) for worker in sidecars))
        await settle(0.5)
    return {
        **latency_summary("session", each),
        **latency_summary("all", last),
        **latency_summary("create_to_all", from_create),
        **(latency_summary("agent_step", steps) if steps else {}),
    }


async def floor(reaper: Reaper, params: TerminateParams) -> dict[str, Value]:
    """The same rounds against the bare session server: the transport floor."""
    socket = str(reaper.workdir / "bare-sessions.sock")
    server = await Worker.start(reaper, "bare-sessions", "bare-sessions", ["--socket", socket])
    workers = [server]
    try:
        await server.event("ready", 60.0)
        sidecars, hit, _ = await _sidecars(reaper, params, socket, "f")
        workers += sidecars
        figures = await _rounds(BareTarget(server), sidecars, hit, params.rounds)
        server_rss = rss_bytes(server.pid)
    finally:
        await close_workers(reaper, workers)
    return {
        "floor_session_p99_ms": figures["session_p99_ms"],
        "floor_all_p50_ms": figures["all_p50_ms"],
        "floor_all_p99_ms": figures["all_p99_ms"],
        "floor_server_rss_mb": mb(server_rss),
    }


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
    bare = await floor(reaper, params) if params.with_baseline else {}
    auth = await start_auth(reaper, common, seed=params.locks)
    workers: list[Worker] = []
    try:
        agent = await start_agent(reaper, auth.address, params.locks)
        workers.append(agent)
        idle_rss = rss_bytes(agent.pid)
        socket = str(reaper.workdir / "agent" / "agent.sock")
        sidecars, hit, register_s = await _sidecars(reaper, params, socket, "s")
        workers += sidecars
        result.add(register_all_s=round(register_s, 3))
        await settle()
        status = await agent.call("status")
        if status["sessions"] != params.sessions:
            raise RuntimeError(
                f"the agent holds {status['sessions']} sessions, not {params.sessions}"
            )
        rss = rss_bytes(agent.pid)
        cpu_before = cpu_seconds(agent.pid)
        result.update(await _rounds(AgentTarget(auth, agent), sidecars, hit, params.rounds))
        result.add(
            agent_cpu_s=round(cpu_seconds(agent.pid) - cpu_before, 2),
            agent_rss_mb=mb(rss),
            agent_rss_idle_mb=mb(idle_rss),
            agent_rss_end_mb=mb(rss_bytes(agent.pid)),
        )
        result.update(bare)
        ours, floor_p99 = result.figures.get("all_p99_ms"), bare.get("floor_all_p99_ms")
        if isinstance(ours, float) and isinstance(floor_p99, float) and floor_p99 > 0:
            result.add(vs_floor_all_p99=round(ours / floor_p99, 2))
    finally:
        await close_workers(reaper, workers[1:])
        await close_workers(reaper, workers[:1])
        await auth.close()
    return result


async def _sidecars(
    reaper: Reaper, params: TerminateParams, socket: str, name: str
) -> tuple[list[Worker], list[Worker], float]:
    """Sidecar workers holding every session open, those holding matching ones, and the
    seconds from the first registration sent to the last answered."""
    sessions = split(params.sessions, params.procs)
    matching = split(params.matching, len(sessions))
    matching += [0] * (len(sessions) - len(matching))
    workers, hit = [], []
    for index, (count, hits) in enumerate(zip(sessions, matching, strict=True)):
        args = ["--socket", socket, "--matching", str(hits)]
        worker = (await start_workers(reaper, "sidecars", [count], args, f"{name}{index}-"))[0]
        workers.append(worker)
        if hits:
            hit.append(worker)
    started = time.monotonic()
    await asyncio.gather(*(worker.call("open", ROUND_TIMEOUT) for worker in workers))
    return workers, hit, time.monotonic() - started

"""The auth server's watch workers: started, fed, watched, restarted and stopped.

`WatchWorkers` runs `count` worker processes (lockd.runtime.fanout_worker) beside the
auth server, each with a control channel (lockd.runtime.worker_channel). It tells them
of every batch the auth server's hub applies (a wake-up for their log tail) and of every
revision somebody waits for, and mirrors what their agents do into the auth server's
`AgentRegistry`, so `lockctl status` and `lock --wait` see every agent whichever process
serves it. A worker that dies is noticed at once (its channel ends): its agents are
marked disconnected (they reconnect, to a process still listening) and it is started
again after `RESTART_DELAY`. Workers stop with the auth server; when the auth server
dies without stopping them, their channels end and they stop by themselves.

`claim_port` is what keeps the port rule of issue 11 with a shared port: before the auth
server binds with SO_REUSEPORT, a plain bind proves no other process holds the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import structlog
from prometheus_client import Counter

from lockd.auth.agents import AgentRegistry
from lockd.domain.errors import UnavailableError
from lockd.domain.events import Event
from lockd.domain.ports import Clock
from lockd.domain.timeparse import parse_rfc3339
from lockd.obs.audit import AuditEvent, AuditSink
from lockd.obs.loop_metrics import LoopCounter
from lockd.obs.metrics import AuthMetrics
from lockd.runtime.fanout_worker import WorkerSpec
from lockd.runtime.worker_channel import ChannelClosed, ControlChannel, Message

_log = structlog.get_logger("lockd.auth.workers")

START_TIMEOUT = 60.0  # a loaded machine imports grpc slowly
RESTART_DELAY = 1.0
STOP_MARGIN = 5.0  # beyond the shutdown grace, before a worker is killed


def claim_port(host: str, port: str) -> None:
    """Fail like a taken port if anything listens on host:port; port 0 is free."""
    if int(port) == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # Like grpc's own listeners: connections of a previous run in TIME_WAIT do not
        # hold the port, a listening socket (SO_REUSEPORT or not) still does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise UnavailableError(
                f"cannot listen on {host}:{port}: the address is in use "
                "(is another process listening there?)"
            ) from None


@dataclass(slots=True)
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    channel: ControlChannel
    # The worker's stream tokens -> the auth server's registry tokens.
    tokens: dict[int, int] = field(default_factory=dict)
    agents: dict[int, str] = field(default_factory=dict)
    # Its last reported fan-out totals (lockd.runtime.fanout_worker.WORKER_METRICS).
    metrics: dict[str, float] = field(default_factory=dict)


class WatchWorkers:
    def __init__(
        self,
        spec: WorkerSpec,
        count: int,
        agents: AgentRegistry,
        audit: AuditSink,
        clock: Clock,
        metrics: AuthMetrics,
    ) -> None:
        self._spec = spec
        self._metrics = metrics
        self._count = count
        self._agents = agents
        self._audit = audit
        self._clock = clock
        self._workers: dict[int, _Worker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.deaths = 0
        agents.on_await.append(self._send_awaited)

    @property
    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self._workers.values()]

    def serving(self, agent_id: str) -> int | None:
        """The index of the worker whose stream of `agent_id` is open (None: none is)."""
        for worker in self._workers.values():
            if agent_id in worker.agents.values():
                return worker.index
        return None

    async def start(self) -> None:
        """Start every worker and wait until each listens; on failure none is left."""
        try:
            async with asyncio.TaskGroup() as group:  # one failing cancels the others
                for index in range(1, self._count + 1):
                    group.create_task(self._start(index))
        except BaseException as error:
            await self.stop()
            if isinstance(error, BaseExceptionGroup):
                raise error.exceptions[0] from None  # the first failure says why
            raise

    async def _start(self, index: int) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lockd.runtime.fanout_worker",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        channel = await ControlChannel.over(ours)
        spec = replace(self._spec, index=index, awaited=self._agents.awaited)
        channel.send(spec.to_message())
        # Known from now on: commits from here on reach it (it reads them once it serves),
        # so none falls between its first read of the log and its registration.
        worker = _Worker(index, process, channel)
        self._workers[index] = worker
        try:
            try:
                async with asyncio.timeout(START_TIMEOUT):
                    ready = await channel.receive()
            except TimeoutError:
                ready = None
            if ready is None or "ready" not in ready:
                raise UnavailableError(f"watch worker {index} did not start; see its log")
        except BaseException:
            del self._workers[index]
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            await channel.close()
            raise
        task = asyncio.create_task(self._follow(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        _log.info("watch worker started", worker=index, pid=process.pid)

    def publish(self, events: Sequence[Event]) -> None:
        """The hub applied `events` (a hub `on_batch` listener): wake the workers' tails."""
        self._send_all({"commit": events[-1].revision})

    def _send_awaited(self) -> None:
        self._send_all({"await": self._agents.awaited})

    def _send_all(self, message: Message) -> None:
        for worker in list(self._workers.values()):
            try:
                worker.channel.send(message)
            except ChannelClosed:
                # Its follow task notices the end, reports the death and restarts it.
                _log.debug("worker channel closed", worker=worker.index)

    async def _follow(self, worker: _Worker) -> None:
        """Mirror the worker's messages until its channel ends; then it is dead."""
        try:
            while (message := await worker.channel.receive()) is not None:
                self._apply(worker, message)
        finally:
            await self._ended(worker)

    def _apply(self, worker: _Worker, message: Message) -> None:
        agents, now = self._agents, self._clock.now()
        if "connect" in message:
            agent_id, address, token = message["connect"]
            worker.tokens[token] = agents.connect(agent_id, address, now)
            worker.agents[token] = agent_id
        elif "ack" in message:
            agent_id, token, epoch, revision, state = message["ack"]
            agents.ack(agent_id, worker.tokens.get(token, 0), epoch, revision, state, now)
        elif "heard" in message:
            agent_id, token = message["heard"]
            agents.heard(agent_id, worker.tokens.get(token, 0), now)
        elif "disconnect" in message:
            agent_id, token = message["disconnect"]
            agents.disconnect(agent_id, worker.tokens.pop(token, 0))
            worker.agents.pop(token, None)
        elif "lock_out" in message:
            # The token stays: the locked agent's last ack still counts (`lock --wait`).
            agent_id, token = message["lock_out"]
            agents.lock_out(agent_id, worker.tokens.get(token, 0))
        elif "metrics" in message:
            self._add_metrics(worker, message["metrics"])
        elif "audit" in message:
            record = message["audit"]
            self._audit.emit(
                AuditEvent(
                    record["event"],
                    record["code"],
                    parse_rfc3339(record["time"]),
                    record["cluster"],
                    record["fields"],
                )
            )

    def _add_metrics(self, worker: _Worker, totals: dict[str, float]) -> None:
        """Add what the worker counted since its last report to the server's metrics."""
        for key, total in totals.items():
            delta = total - worker.metrics.get(key, 0.0)
            worker.metrics[key] = total
            if key == "lockd_watch_streams":
                self._metrics.watch_streams.inc(delta)
            elif delta > 0:
                self._counter(key).inc(delta)

    def _counter(self, key: str) -> Counter | LoopCounter:
        metrics = self._metrics
        name, _, reason = key.partition(":")
        if reason:
            return metrics.resets_total.labels(reason=reason)
        counters: dict[str, Counter | LoopCounter] = {
            "lockd_events_sent_total": metrics.events_sent_total,
            "lockd_event_batches_sent_total": metrics.event_batches_sent_total,
            "lockd_snapshots_sent_total": metrics.snapshots_sent_total,
        }
        return counters[name]

    async def _ended(self, worker: _Worker) -> None:
        self._workers.pop(worker.index, None)
        # Its streams are gone with it.
        self._metrics.watch_streams.dec(worker.metrics.get("lockd_watch_streams", 0.0))
        for token, agent_id in worker.agents.items():
            self._agents.disconnect(agent_id, worker.tokens.get(token, 0))
        await worker.channel.close()
        code = await worker.process.wait()
        if self._stopping:
            return
        self.deaths += 1
        # Status 0: it was stopped (SIGTERM, e.g. to the whole service's process group).
        report = _log.warning if code == 0 else _log.error
        report(
            "watch worker ended; its agents reconnect to the processes still listening",
            worker=worker.index,
            pid=worker.process.pid,
            exit_status=code,
            agents=len(worker.agents),
        )
        await asyncio.sleep(RESTART_DELAY)
        if not self._stopping:
            try:
                await self._start(worker.index)
            except (UnavailableError, OSError) as error:
                _log.error(
                    "could not restart a watch worker", worker=worker.index, error=str(error)
                )

    async def stop(self) -> None:
        """Tell every worker to stop (Reset(shutdown) to its streams); kill the late."""
        self._stopping = True
        workers = list(self._workers.values())
        self._send_all({"stop": True})
        deadline = self._spec.shutdown_grace + STOP_MARGIN
        for worker in workers:
            try:
                async with asyncio.timeout(deadline):
                    await worker.process.wait()
            except TimeoutError:
                _log.warning("watch worker did not stop; killing it", worker=worker.index)
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

"""Many watching agents in one worker process, and their bare-transport twins.

`AgentFleet` runs N real agents — `WatchClient` + `AgentRuntime` + `LocalView`, one
WatchLocks stream (and one TCP connection) each — sharing one metrics registry.
`TimedRuntime` is the real runtime plus a probe: after each replication message it
tells the process's `Probe` what the agent applied and whether it is SYNCED.

`BareFleet` is the same harness over the bare fan-out server (`lockd.bench.bare`): N
raw streams that only count the frames they receive — the transport floor.
`LightFleet` watches the real auth server with minimal clients (parse each frame for
its revision; no view, no acks): the server's share, without the agents' work.
`EtcdFleet` is the same shape against a local etcd (the `--peer etcd` run): one Watch
stream and one connection per watcher, each response parsed for its revision.

The probe reports, per revision, when the first and the last agent of this process had
applied it (`applied` events), and when every agent is SYNCED (`synced`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from lockd.agent.persist import ViewOwner
from lockd.agent.runtime import AgentRuntime
from lockd.bench import etcd_wire
from lockd.bench.wire import ChildWire, Message
from lockd.client.agent_watcher import CHANNEL_OPTIONS, WatchClient, WatchClientSettings
from lockd.domain.events import Event
from lockd.domain.ports import Clock, SystemClock
from lockd.domain.view import LocalView, SyncState, ViewSettings
from lockd.obs.audit import AuditEvent
from lockd.obs.metrics import AgentMetrics
from lockd.v1 import watch_service_pb2 as watch_pb

CLUSTER = "bench.lockd"
# Each in-process agent gets its own connection, as separate hosts would.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)
BARE_WATCH = "/lockd.bench.Bare/Watch"
WATCH_LOCKS = "/lockd.v1.WatchService/WatchLocks"


class NullAuditSink:
    """Audit lines go nowhere (the fleet measures replication, not audit IO)."""

    def emit(self, event: AuditEvent) -> None:
        pass

    def close(self) -> None:
        pass


class Probe:
    """What the agents of this process applied, and when; reported over the wire."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.track_from: int | None = None
        self._pending: dict[int, list[float]] = {}
        self.synced = 0
        self.first_synced: list[float] = []
        self.resynced = 0
        self.last_resynced_at = 0.0
        self.snapshots = 0
        self.mark_time: float | None = None

    def applied(self, old: int, new: int, at: float) -> None:
        if self.track_from is None:
            return
        for revision in range(max(old + 1, self.track_from), new + 1):
            entry = self._pending.get(revision)
            if entry is None:
                entry = self._pending[revision] = [0.0, at, at]
            entry[0] += 1
            entry[2] = at
            if entry[0] >= self.size:
                del self._pending[revision]
                ChildWire.emit("applied", rev=revision, first=entry[1], last=at)

    def sync_changed(self, synced: bool, first: bool, since_mark: bool, at: float) -> None:
        self.synced += 1 if synced else -1
        if first:
            self.first_synced.append(at)
            if len(self.first_synced) == self.size:
                ChildWire.emit("synced", at=at, times=self.first_synced)
        if since_mark:
            self.resynced += 1
            self.last_resynced_at = max(self.last_resynced_at, at)

    def mark(self) -> None:
        self.mark_time = time.monotonic()
        self.resynced = 0
        self.last_resynced_at = 0.0
        self.snapshots = 0


class TimedRuntime(AgentRuntime):
    """The real runtime, reporting to the probe after every replication message."""

    def __init__(self, view: LocalView, clock: Clock, metrics: AgentMetrics, probe: Probe) -> None:
        owner = ViewOwner(CLUSTER, view.settings.server_id)
        super().__init__(view, clock, NullAuditSink(), metrics, owner, None)
        self._probe = probe
        self._synced = False
        self._ever_synced = False
        self._mark: float | None = None

    def on_snapshot_end(self, epoch: str, revision: int, count: int) -> None:
        old = self.view.state.revision
        super().on_snapshot_end(epoch, revision, count)
        self._probe.snapshots += 1
        self._after(old)

    def on_events(self, epoch: str, first: int, last: int, events: Sequence[Event]) -> None:
        old = self.view.state.revision
        super().on_events(epoch, first, last, events)
        self._after(old)

    def on_heartbeat(self, epoch: str, revision: int, healthy: bool, interval: float) -> None:
        super().on_heartbeat(epoch, revision, healthy, interval)
        self._after(None)

    def on_connection(self, connected: bool) -> None:
        super().on_connection(connected)
        self._after(None)

    def _after(self, old: int | None) -> None:
        now = time.monotonic()
        if old is not None and self.view.state.revision > old:
            self._probe.applied(old, self.view.state.revision, now)
        synced = self.view.sync_state(now) is SyncState.SYNCED
        if synced is self._synced:
            return
        self._synced = synced
        first = synced and not self._ever_synced
        self._ever_synced = self._ever_synced or synced
        mark = self._probe.mark_time
        since_mark = synced and mark is not None and self._mark != mark
        if since_mark:
            self._mark = mark
        self._probe.sync_changed(synced, first, since_mark, now)


class AgentFleet:
    """N real watching agents on one auth server (`address`), or on several: a
    comma-separated list, tried in its order (the agents' `auth_servers`)."""

    def __init__(self, address: str, count: int, prefix: str) -> None:
        self.address = address
        self.count = count
        self.prefix = prefix
        self.probe = Probe(count)
        self.metrics = AgentMetrics(CollectorRegistry())
        self._tasks: list[asyncio.Task[None]] = []

    def connect(self) -> None:
        clock = SystemClock()
        for index in range(self.count):
            agent_id = f"{self.prefix}-{index:05d}"
            view = LocalView(ViewSettings(agent_id))
            runtime = TimedRuntime(view, clock, self.metrics, self.probe)
            settings = WatchClientSettings(
                agent_id=agent_id,
                auth_servers=tuple(self.address.split(",")),
                channel_options=OWN_CONNECTION,
            )
            watcher = WatchClient(runtime, settings)
            self._tasks.append(asyncio.create_task(watcher.run_forever()))

    async def handle(self, command: Message) -> Message:
        name = command["cmd"]
        if name == "connect":
            self.connect()
            return {}
        if name == "track":
            self.probe.track_from = int(command["from_rev"])
            return {}
        if name == "mark":
            self.probe.mark()
            return {}
        if name == "status":
            probe = self.probe
            return {
                "synced": probe.synced,
                "resynced": probe.resynced,
                "last_resynced_at": probe.last_resynced_at,
                "snapshots": probe.snapshots,
            }
        raise ValueError(f"unknown command {name!r}")

    async def stop(self) -> None:
        await _cancel(self._tasks)


class BareFleet:
    """N raw streams on the bare fan-out server; frame k stands for revision k. `work`:
    seconds of CPU each stream spends on each frame (`--floor-work`), as an agent would."""

    def __init__(self, address: str, count: int, work: float = 0.0) -> None:
        self.address = address
        self.count = count
        self.work = work
        self.probe = Probe(count)
        self.probe.track_from = 1
        self._tasks: list[asyncio.Task[None]] = []

    def connect(self) -> None:
        self._tasks = [asyncio.create_task(self._watch()) for _ in range(self.count)]

    async def _watch(self) -> None:
        options: list[tuple[str, Any]] = [*CHANNEL_OPTIONS, *OWN_CONNECTION]
        async with grpc.aio.insecure_channel(self.address, options=options) as channel:
            call: Any = channel.stream_stream(BARE_WATCH)()
            await call.write(b"hello")
            welcome = await call.read()  # the server's first frame: the stream is live
            if welcome is grpc.aio.EOF:
                return
            self.probe.sync_changed(True, True, False, time.monotonic())
            received = 0
            while (frame := await call.read()) is not grpc.aio.EOF:
                del frame
                if self.work:
                    _spend(self.work)
                received += 1
                self.probe.applied(received - 1, received, time.monotonic())

    async def handle(self, command: Message) -> Message:
        if command["cmd"] == "connect":
            self.connect()
            return {}
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        await _cancel(self._tasks)


class LightFleet:
    """N minimal WatchLocks clients of the real auth server: a Hello, then each frame
    parsed for its revision — no view, no acks. What the auth server alone costs."""

    def __init__(self, address: str, count: int, prefix: str) -> None:
        self.address = address
        self.count = count
        self.prefix = prefix
        self.probe = Probe(count)
        self._tasks: list[asyncio.Task[None]] = []

    def connect(self) -> None:
        self._tasks = [
            asyncio.create_task(self._watch(f"{self.prefix}-{index:05d}"))
            for index in range(self.count)
        ]

    async def _watch(self, agent_id: str) -> None:
        """Stream until the server ends it; a stream refused before its snapshot (too many
        snapshots in flight: Reset(overloaded)) is tried again, as an agent would."""
        # Locks packed, as lockd's agents ask: the frames the floor sends too.
        said = watch_pb.WatchHello(agent_id=agent_id, packed_locks=True)
        hello = watch_pb.WatchLocksRequest(hello=said)
        options: list[tuple[str, Any]] = [*CHANNEL_OPTIONS, *OWN_CONNECTION]
        synced = False
        while not synced:
            async with grpc.aio.insecure_channel(self.address, options=options) as channel:
                call: Any = channel.stream_stream(WATCH_LOCKS)()
                await call.write(hello.SerializeToString())
                synced = await self._follow(call)
            if not synced:
                await asyncio.sleep(1.0 + random.random())

    async def _follow(self, call: Any) -> bool:
        """Read frames until the stream ends; whether it got as far as a snapshot."""
        revision, synced = 0, False
        while (frame := await call.read()) is not grpc.aio.EOF:
            response = watch_pb.WatchLocksResponse.FromString(frame)
            kind = response.WhichOneof("message")
            if kind == "events":
                new = response.events.to_revision
            elif kind == "snapshot_end":
                new = response.snapshot_end.revision
            else:
                continue
            now = time.monotonic()
            if not synced:
                synced = True
                self.probe.sync_changed(True, True, False, now)
            if new > revision:
                self.probe.applied(revision, new, now)
                revision = new
        return synced

    async def handle(self, command: Message) -> Message:
        if command["cmd"] == "connect":
            self.connect()
            return {}
        if command["cmd"] == "track":
            self.probe.track_from = int(command["from_rev"])
            return {}
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        await _cancel(self._tasks)


class EtcdFleet(LightFleet):
    """N etcd watchers of the probe key: revision k of etcd stands for a lock."""

    async def _watch(self, agent_id: str) -> None:
        del agent_id  # etcd watchers have no identity
        options: list[tuple[str, Any]] = [*CHANNEL_OPTIONS, *OWN_CONNECTION]
        async with grpc.aio.insecure_channel(self.address, options=options) as channel:
            call: Any = channel.stream_stream(etcd_wire.WATCH)()
            await call.write(etcd_wire.watch_create(etcd_wire.KEY))
            revision = 0
            while (frame := await call.read()) is not grpc.aio.EOF:
                response = etcd_wire.WatchFrame.parse(frame)
                now = time.monotonic()
                if response.created:
                    self.probe.sync_changed(True, True, False, now)
                if response.events and response.revision > revision:
                    self.probe.applied(revision, response.revision, now)
                    revision = response.revision


def _spend(seconds: float) -> None:
    """Keep this thread on the CPU for `seconds` of its own CPU time (not wall time: on
    loaded cores it spends as much, only later)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

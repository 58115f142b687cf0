"""The `apply` worker role: one real agent runtime fed pre-encoded frames in-process.

What an agent's Python costs per lock, without gRPC and without another process on the
cores: the frames are the auth server's own encoding (`ProtoWatchEncoder`), locks packed as
lockd's agents ask for them (WatchHello.packed_locks), parsed with
`WatchLocksResponse.FromString` and handed to `AgentRuntime` exactly as
`lockd.client.agent_watcher` does (snapshot chunks one by one, event batches through
`convert.events_from_pb`). CPU is `time.process_time`, each figure the best of `rounds`;
RSS is this process's VmRSS: before the run (the interpreter, grpcio, protobuf,
prometheus_client and lockd's agent modules), with the snapshot's locks (freed heap
handed back, as the agent does after writing its base), and after the events (each a
new lock: the view grows by `events × rounds`).
"""

from __future__ import annotations

import functools
import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from lockd.agent.persist import ViewOwner
from lockd.agent.runtime import AgentRuntime
from lockd.agent.view_saver import release_freed_memory
from lockd.api.watch_servicer import ProtoWatchEncoder
from lockd.auth.watch_stream import SNAPSHOT_CHUNK
from lockd.bench.authproc import seed_lock
from lockd.bench.fleet import NullAuditSink
from lockd.bench.procs import rss_bytes
from lockd.bench.wire import Message
from lockd.domain.events import Event
from lockd.domain.lock import Lock
from lockd.domain.ports import SystemClock
from lockd.domain.resources import ClusterAuthPreference, ReplicatedResource
from lockd.domain.view import LocalView, ViewSettings
from lockd.obs.metrics import AgentMetrics
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.wire import convert

EPOCH = "bench-apply"
CLUSTER = "bench"


class ApplyProbe:
    """Answers `run` {locks, events, rounds} with the figures of the module docstring."""

    def __init__(self) -> None:
        self._idle_rss = rss_bytes(os.getpid())

    async def handle(self, command: Message) -> Message:
        if command["cmd"] != "run":
            raise ValueError(f"unknown command {command['cmd']!r}")
        locks, events, rounds = (
            int(command["locks"]),
            int(command["events"]),
            int(command["rounds"]),
        )
        return measure(self._idle_rss, locks, events, rounds)

    async def stop(self) -> None:
        return None


def measure(idle: int, locks: int, events: int, rounds: int) -> Message:
    """`idle`: this process's RSS before the run (taken when the role was built)."""
    encoder = ProtoWatchEncoder()
    runtime = _runtime()
    now = datetime.now(UTC)
    resources: list[ReplicatedResource] = [ClusterAuthPreference()]
    resources.extend(_lock(index, now) for index in range(locks))
    chunks = [
        encoder.snapshot_chunk(resources[start : start + SNAPSHOT_CHUNK], packed=True)
        for start in range(0, len(resources), SNAPSHOT_CHUNK)
    ]
    del resources

    def apply_snapshot(frames: list[bytes]) -> None:
        runtime.on_snapshot_begin(EPOCH, locks)
        for frame in frames:
            chunk = watch_pb.WatchLocksResponse.FromString(frame).snapshot_chunk
            runtime.on_snapshot_chunk(*convert.snapshot_chunk_from_pb(chunk))
        runtime.on_snapshot_end(EPOCH, locks, locks + 1)  # the locks and the preference

    snapshot_s = _cpu(lambda: apply_snapshot(chunks))
    chunks.clear()
    _trim()
    with_locks = rss_bytes(os.getpid())

    revision = locks
    per_event: list[float] = []
    for _ in range(rounds):
        frames = []
        for _ in range(events):
            revision += 1
            lock = _lock(revision, now)
            frames.append(encoder.events(EPOCH, [Event.put(revision, lock, now)], packed=True))
        per_event.append(_cpu(functools.partial(_apply_events, runtime, frames)) / events)
    _trim()
    return {
        "idle_rss_mb": round(idle / 2**20, 1),
        "rss_mb": round(with_locks / 2**20, 1),
        "rss_per_lock_b": round((with_locks - idle) / max(1, locks)),
        "snapshot_us_per_lock": round(snapshot_s * 1e6 / max(1, locks), 2),
        "event_us": round(min(per_event) * 1e6, 2),
        "event_us_median": round(sorted(per_event)[len(per_event) // 2] * 1e6, 2),
        "rss_end_mb": round(rss_bytes(os.getpid()) / 2**20, 1),
        "view_locks": len(runtime.view.state.locks),
    }


def _lock(index: int, now: datetime) -> Lock:
    """A lock as the auth server stores it: stamped with its creator and time."""
    return replace(seed_lock(index), created_at=now, created_by="bench")


def _runtime() -> AgentRuntime:
    view = LocalView(ViewSettings("bench-apply"))
    metrics = AgentMetrics(CollectorRegistry())
    owner = ViewOwner(CLUSTER, "bench-apply")
    return AgentRuntime(view, SystemClock(), NullAuditSink(), metrics, owner, None)


def _apply_events(runtime: AgentRuntime, frames: Sequence[bytes]) -> None:
    for frame in frames:
        batch = watch_pb.WatchLocksResponse.FromString(frame).events
        applied = convert.events_from_pb(batch.events)
        runtime.on_events(batch.epoch, batch.from_revision, batch.to_revision, applied)


def _cpu(work: Callable[[], None]) -> float:
    gc.collect()
    start = time.process_time()
    work()
    return time.process_time() - start


def _trim() -> None:
    """Hand freed heap back as the agent does after writing its base."""
    gc.collect()
    release_freed_memory()

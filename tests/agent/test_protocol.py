"""The agent's watch client against a scripted server: gaps, older state, Resets with
retry_after, backoff that starts over after a healthy stream, malformed messages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from lockd.agent.persist import ViewOwner
from lockd.agent.runtime import AgentRuntime
from lockd.client import SessionDenied
from lockd.client.agent_watcher import WatchClient, WatchClientSettings
from lockd.domain.backoff import Backoff
from lockd.domain.events import Event
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.resources import ClusterAuthPreference, ReplicatedResource
from lockd.domain.view import LocalView, ViewSettings
from lockd.obs.audit import MemoryAuditSink
from lockd.obs.metrics import AgentMetrics
from lockd.testing import FakeClock
from lockd.v1 import watch_service_pb2 as pb
from lockd.wire import convert
from tests.agent.fake_auth import Connection, FakeFactory, hold_open
from tests.agent.helpers import CLUSTER, Cluster, terminated_within
from tests.support import eventually

EPOCH = "fake-epoch"
ALICE = Identity(user="alice")
ALICE_LOCK = Lock("l-alice", LockTarget(user="alice"), message="gap test")
OTHER_LOCK = Lock("l-other", LockTarget(user="zed"))
BOB_LOCK = Lock("l-bob", LockTarget(user="bob"))


def put(revision: int, lock: Lock) -> Event:
    return Event.put(revision, lock, datetime.now(UTC))


@pytest.mark.parametrize("shape", ["skips-a-revision", "claims-a-revision-it-lacks"])
async def test_a_gap_makes_the_agent_resume_and_terminate_exactly_once(
    cluster: Cluster, fake: FakeFactory, shape: str
) -> None:
    """A batch that does not follow the applied revision (3 after 1, or "2..3" carrying
    only 3) is dropped unapplied; the agent resumes from revision 1, the right batch ends
    the session once, and a repeated batch ends nothing again."""
    session_open = asyncio.Event()

    async def with_gap(connection: Connection) -> None:
        assert (connection.hello.epoch, connection.hello.applied_revision) == ("", 0)
        await connection.snapshot(EPOCH, 1)
        await session_open.wait()
        first = 3 if shape == "skips-a-revision" else 2
        await connection.events(EPOCH, first, 3, [put(3, ALICE_LOCK)])
        await hold_open(connection)

    async def resumed(connection: Connection) -> None:
        batch = [put(2, OTHER_LOCK), put(3, ALICE_LOCK)]
        await connection.events(EPOCH, 2, 3, batch)
        await connection.events(EPOCH, 2, 3, batch)  # a duplicate: ignored
        await connection.heartbeats_forever(EPOCH, 3)

    server = await fake([with_gap, resumed])
    agent = await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    await agent.wait_state("synced")
    session = await agent.open(ALICE)
    session_open.set()
    assert await terminated_within(session) == (
        'lock targeting User:"alice" is in force: gap test',
        "l-alice",
    )
    connections = await server.wait_connections(2)
    hello = connections[1].hello
    assert (hello.epoch, hello.applied_revision) == (EPOCH, 1)
    await agent.wait_revision(3)
    await connections[1].wait_for_ack(3)
    await agent.recorded("session.terminated", 1)
    await agent.wait_metric("lockd_agent_terminations_total", 1, reason="lock")
    assert agent.metric("lockd_agent_resyncs_total", reason="gap") == 1


async def test_snapshot_chunks_are_enforced_as_they_arrive(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """A snapshot of a new history whose SnapshotEnd is still to come: the lock in its
    first chunk already ends the session it hits and refuses new ones, the view stays
    at its old revision, and the end completes it."""
    chunk_sent, session_open, finish = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def script(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        await connection.heartbeat(EPOCH, 1, interval=3600.0)  # no silence timeout meanwhile
        await session_open.wait()
        resources: list[ReplicatedResource] = [ClusterAuthPreference(), ALICE_LOCK]
        begin = pb.SnapshotBegin(epoch="new-epoch", revision=7, count=2)
        await connection.send(pb.WatchLocksResponse(snapshot_begin=begin))
        chunk = pb.SnapshotChunk(resources=[convert.resource_to_pb(r) for r in resources])
        await connection.send(pb.WatchLocksResponse(snapshot_chunk=chunk))
        chunk_sent.set()
        await finish.wait()
        end = pb.SnapshotEnd(epoch="new-epoch", revision=7, count=2)
        await connection.send(pb.WatchLocksResponse(snapshot_end=end))
        await connection.heartbeats_forever("new-epoch", 7)

    server = await fake([script])
    agent = await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    await agent.wait_revision(1)
    session = await agent.open(ALICE)
    session_open.set()
    assert await terminated_within(session) == (
        'lock targeting User:"alice" is in force: gap test',
        "l-alice",
    )
    assert chunk_sent.is_set()
    status = await agent.status()
    assert (status.epoch, status.revision) == (EPOCH, 1)
    with pytest.raises(SessionDenied):
        await agent.open(ALICE)
    finish.set()
    status = await agent.wait_revision(7)
    assert (status.epoch, status.locks_in_force) == ("new-epoch", 1)


async def test_an_older_snapshot_of_the_same_epoch_is_never_accepted(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """After revision 5, a snapshot at revision 3 is refused (the lock it lacks stays in
    force); a later snapshot at 6 is taken and counted as a resync."""

    async def at_five(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 5, [BOB_LOCK])
        await connection.wait_for_ack(5)

    async def older(connection: Connection) -> None:
        assert (connection.hello.epoch, connection.hello.applied_revision) == (EPOCH, 5)
        await connection.snapshot(EPOCH, 3)
        await hold_open(connection)

    async def newer(connection: Connection) -> None:
        assert (connection.hello.epoch, connection.hello.applied_revision) == (EPOCH, 5)
        await connection.snapshot(EPOCH, 6, [BOB_LOCK, OTHER_LOCK])
        await connection.heartbeats_forever(EPOCH, 6)

    server = await fake([at_five, older, newer])
    agent = await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    await server.wait_connections(3)
    status = await agent.wait_revision(6)
    assert status.locks_in_force == 2
    assert agent.metric("lockd_agent_resyncs_total", reason="gap") == 1
    assert agent.metric("lockd_agent_resyncs_total", reason="too_old") == 1
    with pytest.raises(SessionDenied):
        await agent.open(Identity(user="bob"))


async def test_a_reset_retry_after_is_honoured(cluster: Cluster, fake: FakeFactory) -> None:
    """Reset{retry_after: 1.5s} delays the next attempt by at least that much, although
    the agent's own backoff (cap 0.5 s) would have retried sooner."""
    sent_at: list[float] = []

    async def reset(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        await connection.reset(1.5)
        sent_at.append(time.monotonic())

    async def stay(connection: Connection) -> None:
        await connection.heartbeats_forever(EPOCH, 1)

    server = await fake([reset, stay])
    await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    connections = await server.wait_connections(2)
    assert connections[1].opened_at - sent_at[0] >= 1.4


async def test_a_malformed_message_drops_the_stream_but_not_the_watcher(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """A response the agent cannot understand ends that stream; the agent reconnects and
    resumes from its revision instead of silently stopping to watch."""

    async def garbage(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        await connection.send(pb.WatchLocksResponse())  # no message set
        await hold_open(connection)

    async def good(connection: Connection) -> None:
        await connection.events(EPOCH, 2, 2, [put(2, ALICE_LOCK)])
        await connection.heartbeats_forever(EPOCH, 2)

    server = await fake([garbage, good])
    agent = await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    connections = await server.wait_connections(2)
    assert connections[1].hello.applied_revision == 1
    await agent.wait_revision(2)
    assert not (await agent.client.check_access(ALICE)).allowed


@dataclass(frozen=True)
class RecordingBackoff(Backoff):
    """A Backoff that records the attempt number of every delay it is asked for."""

    attempts: list[int] = field(default_factory=list)

    def delay(self, attempt: int, draw: Callable[[], float], floor: float = 0.0) -> float:
        self.attempts.append(attempt)
        return super().delay(attempt, draw, floor)


async def test_the_backoff_starts_over_after_a_healthy_stream(fake: FakeFactory) -> None:
    """Failures count attempts up (0, 1, 2); a stream that lived longer than the healthy
    period on the agent's clock resets the count, so the next failure waits like the
    first one did. The clock moves only in the healthy stream: however slowly the
    refused streams run, they never count as healthy."""
    clock = FakeClock()

    async def refuse(connection: Connection) -> None:
        return  # ends the stream at once

    async def healthy(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        clock.advance(1.0)  # the healthy period, spent inside this stream

    server = await fake([refuse, refuse, refuse, healthy, refuse])
    backoff = RecordingBackoff(base=0.01, cap=0.05)
    view = LocalView(ViewSettings("node-1"))
    runtime = AgentRuntime(
        view,
        clock,
        MemoryAuditSink(),
        AgentMetrics(CollectorRegistry()),
        ViewOwner(CLUSTER, "node-1"),
        None,
    )
    settings = WatchClientSettings("node-1", (server.address,), backoff, healthy_period=1.0)
    task = asyncio.create_task(WatchClient(runtime, settings).run_forever())
    try:
        await eventually(lambda: len(backoff.attempts) >= 6, what="six reconnections")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert backoff.attempts[:6] == [0, 1, 2, 0, 1, 2]
    assert view.state.epoch == EPOCH


async def test_an_agent_stops_promptly_while_its_auth_server_goes_away(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """Stopping the agent right after its auth server vanished (the watcher is in the
    middle of reconnecting) finishes quickly: grpc may report the watcher's own
    cancellation as a failed call, and that must not keep it looping."""
    for round_ in range(6):

        async def streaming(connection: Connection) -> None:
            await connection.snapshot(EPOCH, 1)
            await connection.heartbeats_forever(EPOCH, 1)

        server = await fake([streaming])
        agent = await cluster.start_agent(
            addresses=(server.address,), name=f"agent-{round_}", persist=False, wait_synced=False
        )
        await agent.wait_state("synced")
        await server.stop()
        await asyncio.sleep(0.01 * round_)
        # A separate task: AgentApp.stop() awaits its tasks under suppress(CancelledError),
        # so a timeout around it could itself be swallowed.
        stopping = asyncio.create_task(agent.stop())
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert done, f"round {round_}: the agent did not stop within 10 s"
        await stopping


async def test_a_server_behind_the_agents_view_is_left_for_the_next_one(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """Reset(AHEAD_OF_SERVER) from a lagging server: the agent keeps its view and goes
    on to the next auth server instead of retrying the lagging one."""

    async def behind(connection: Connection) -> None:
        await connection.reset(0.05, pb.RESET_REASON_AHEAD_OF_SERVER)

    async def current(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 2, [BOB_LOCK])
        await connection.heartbeats_forever(EPOCH, 2)

    lagging, good = await fake([behind]), await fake([current])
    agent = await cluster.start_agent(addresses=(lagging.address, good.address), wait_synced=False)
    await agent.wait_revision(2)
    assert len(lagging.connections) == 1

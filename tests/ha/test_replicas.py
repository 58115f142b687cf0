"""Several auth replicas on one real PostgreSQL database (issue 11).

Two `AuthApp`s share a throwaway database (tests/postgres_server.py); raw WatchLocks
streams on each check what agents see: one gapless, commit-ordered log whatever replica
a write went through, a resume on the other replica without a snapshot, one EXPIRE per
lock with two reapers, both replicas in the status, a new epoch when an agent holds a
revision the store lost, and an outage of the database that ends by itself. A standby
promoted under the replicas: a synchronous one (nothing lost), and an asynchronous one
that lost a commit real agents (`AgentApp`) had applied; real agents also check
`lock --wait`'s ack requests across replicas.
"""

from __future__ import annotations

import asyncio
import functools
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.cli.console import Console
from lockd.cli.wait import wait_for_agents
from lockd.client import AuthClient, ClusterStatus
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.ports import SystemClock
from lockd.obs.audit import MemoryAuditSink
from lockd.runtime.auth_app import AuthApp, AuthServerSettings
from lockd.store.postgres import PostgresOptions, PostgresStore
from lockd.v1 import watch_service_pb2 as watch_pb
from tests.agent.helpers import AgentHandle, Cluster
from tests.api.helpers import (
    WatchClient,
    cluster_status,
    create_lock,
    lock_pb_of,
    open_channel,
    start_following,
)
from tests.ha.conftest import Replicas
from tests.postgres_server import PASSWORD, PostgresDatabase, PostgresServer
from tests.support import eventually

pytestmark = pytest.mark.slow


def soon(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_a_lock_via_one_replica_reaches_streams_on_the_other_in_order(
    replicas: Replicas,
) -> None:
    """Writes through A and B at the same time: a stream on each replica sees every
    revision once, gapless, in commit order, with the same events."""
    _, channel_a = await replicas("a")
    _, channel_b = await replicas("b")
    on_a = await start_following(await WatchClient.open(channel_a, "agent-a"))
    on_b = await start_following(await WatchClient.open(channel_b, "agent-b"))

    async def write(channel: grpc.aio.Channel, prefix: str) -> list[int]:
        return [
            await create_lock(channel, lock_pb_of(f"{prefix}-{index}", user=f"{prefix}{index}"))
            for index in range(15)
        ]

    revisions = await asyncio.gather(write(channel_a, "a"), write(channel_b, "b"))
    assert sorted(revisions[0] + revisions[1]) == list(range(1, 31))
    seen_a = await on_a.until(30)
    seen_b = await on_b.until(30)
    assert [(e.revision, e.name) for e in seen_a] == [(e.revision, e.name) for e in seen_b]
    assert on_a.epoch == on_b.epoch


async def test_an_agent_resumes_on_the_other_replica_without_a_snapshot(
    replicas: Replicas,
) -> None:
    """An agent that followed A resumes on B from its revision: events only, no snapshot."""
    app_a, channel_a = await replicas("a")
    app_b, channel_b = await replicas("b")
    on_a = await start_following(await WatchClient.open(channel_a, "agent-1"))
    for index in range(3):
        await create_lock(channel_a, lock_pb_of(f"before-{index}", user=f"u{index}"))
    await on_a.until(3)
    await app_a.stop()

    await create_lock(channel_b, lock_pb_of("after", user="late"))
    # B tails the shared log: until it has A's revisions it would (rightly) answer the
    # agent that it is ahead of the server, and the agent would come back later.
    await eventually(lambda: app_b.hub.revision >= 4, what="b to tail revisions 1..4")
    resumed = await WatchClient.open(channel_b, "agent-1", on_a.epoch, on_a.revision)
    first = await resumed.read_kind("events")
    assert first.events.from_revision == 4
    assert [event.name for event in first.events.events] == ["after"]
    assert all(r.WhichOneof("message") != "snapshot_begin" for r in resumed.received)


async def test_two_reapers_commit_one_expire_per_lock(replicas: Replicas) -> None:
    """Both replicas run; each expiring lock gets exactly one EXPIRE event."""
    _, channel_a = await replicas("a")
    _, channel_b = await replicas("b")
    follower = await start_following(await WatchClient.open(channel_b, "agent-1"))
    for index in range(4):
        await create_lock(
            channel_a, lock_pb_of(f"brief-{index}", user=f"u{index}", expires=soon(1))
        )
    events = await follower.until(8, within=30)
    expired = [e.name for e in events if e.type == watch_pb.EVENT_TYPE_EXPIRE]
    assert sorted(expired) == [f"brief-{index}" for index in range(4)]


async def test_the_reaper_moves_to_the_survivor_when_the_leader_stops(
    replicas: Replicas,
) -> None:
    """The leading replica stops; the other one takes the lease and expires locks."""
    app_a, _ = await replicas("a")
    app_b, channel_b = await replicas("b")
    assert app_a.replication.leadership.is_leader()
    assert not app_b.replication.leadership.is_leader()
    await app_a.stop()
    await eventually(app_b.replication.leadership.is_leader, within=15, what="takeover")
    follower = await start_following(await WatchClient.open(channel_b, "agent-1"))
    await create_lock(channel_b, lock_pb_of("brief", user="x", expires=soon(1)))
    events = await follower.until(2, within=30)
    assert events[-1].type == watch_pb.EVENT_TYPE_EXPIRE


async def test_the_status_shows_every_replica_and_where_each_agent_is(
    replicas: Replicas,
) -> None:
    """Asked through A, the status lists A and B and the agent connected to B."""
    _, channel_a = await replicas("a")
    _, channel_b = await replicas("b")
    agent = await start_following(await WatchClient.open(channel_b, "agent-on-b"))
    await agent.client.ack(agent.epoch, agent.revision)

    async def listed() -> bool:
        status = await cluster_status(channel_a)
        on_b = [a for a in status.agents if a.server_id == "agent-on-b" and a.connected]
        return [r.replica_id for r in status.replicas] == ["a", "b"] and bool(
            on_b and on_b[0].replica_id == "b"
        )

    await eventually(listed, within=15, what="both replicas and the agent on b")
    status = await cluster_status(channel_a)
    assert status.replica_id == "a"
    assert all(replica.alive and replica.healthy for replica in status.replicas)


async def test_an_agent_ahead_of_the_store_starts_a_new_epoch(replicas: Replicas) -> None:
    """An agent holding a revision the store does not have (lost in a failover) makes the
    replicas start a new epoch; its next stream brings a snapshot of what the store has."""
    _, channel_a = await replicas("a")
    _, channel_b = await replicas("b")
    await create_lock(channel_a, lock_pb_of("kept", user="x"))
    before = await cluster_status(channel_a)

    ahead = await WatchClient.open(channel_a, "agent-1", before.epoch, before.revision + 5)
    reset = await ahead.read_kind("reset")
    assert reset.reset.reason == watch_pb.RESET_REASON_AHEAD_OF_SERVER

    async def new_epoch_everywhere() -> bool:
        epochs = {(await cluster_status(channel)).epoch for channel in (channel_a, channel_b)}
        return len(epochs) == 1 and before.epoch not in epochs

    await eventually(new_epoch_everywhere, within=15, what="a new epoch on both replicas")
    again = await WatchClient.open(channel_b, "agent-1", before.epoch, before.revision + 5)
    follower = await start_following(again)
    assert follower.epoch != before.epoch
    assert follower.revision == before.revision


async def serving(channel: grpc.aio.Channel) -> bool:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


async def test_a_database_outage_ends_by_itself_and_loses_nothing(
    replicas: Replicas, postgres_db: PostgresDatabase
) -> None:
    """The database refuses connections: replicas go NOT_SERVING, writes are UNAVAILABLE
    and heartbeats stop vouching for freshness; when it returns, both serve again and a
    stream continues without a gap."""
    _, channel_a = await replicas("a")
    _, channel_b = await replicas("b")
    follower = await start_following(await WatchClient.open(channel_b, "agent-1"))
    await create_lock(channel_a, lock_pb_of("before", user="x"))
    await follower.until(1)

    server, database = postgres_db.server, postgres_db.name
    # Two statements, two transactions: connections are cut after new ones are refused.
    await asyncio.to_thread(server.psql, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    await asyncio.to_thread(
        server.psql,
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
        f"WHERE datname = '{database}'",
    )
    try:
        for channel in (channel_a, channel_b):
            await eventually(functools.partial(not_serving, channel), within=20, what="down")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await create_lock(channel_a, lock_pb_of("during", user="y"))
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE

        async def unhealthy_heartbeat() -> bool:
            response = await follower.client.read_kind("heartbeat", skip_heartbeats=False)
            return not response.heartbeat.store_healthy

        await eventually(unhealthy_heartbeat, within=20, what="an unhealthy heartbeat")
    finally:
        await asyncio.to_thread(server.psql, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')

    for channel in (channel_a, channel_b):
        await eventually(functools.partial(serving, channel), within=30, what="SERVING again")
    revision = await create_lock(channel_a, lock_pb_of("after", user="z"))
    seen = await follower.until(revision, within=30)
    assert [event.name for event in seen] == ["after"]


async def not_serving(channel: grpc.aio.Channel) -> bool:
    return not await serving(channel)


async def test_replicas_follow_a_promoted_synchronous_standby_without_losing_a_revision(
    postgres_db: PostgresDatabase, postgres_standby: Callable[..., PostgresServer]
) -> None:
    """With a synchronous standby: the primary crashes, the standby is promoted (pg_ctl
    promote); the replicas, whose DSN lists both hosts (target_session_attrs=read-write),
    reconnect to it by themselves, the epoch stays and a stream continues without a gap."""
    standby = await asyncio.to_thread(postgres_standby, synchronous=True)
    primary = postgres_db.server
    dsn = (
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
        f"/{postgres_db.name}?target_session_attrs=read-write"
    )
    apps: list[AuthApp] = []
    channels: list[grpc.aio.Channel] = []
    try:
        for name in ("a", "b"):
            store = PostgresStore(PostgresOptions(dsn=dsn, max_pool=4, sslmode="disable"))
            settings = AuthServerSettings("ha.test", "127.0.0.1:0", replica_id=name)
            apps.append(await AuthApp.start(settings, store, SystemClock(), MemoryAuditSink()))
            channels.append(open_channel(f"127.0.0.1:{apps[-1].port}"))
        channel_a, channel_b = channels
        follower = await start_following(await WatchClient.open(channel_b, "agent-1"))
        for index in range(3):
            last = await create_lock(channel_a, lock_pb_of(f"before-{index}", user=f"u{index}"))
        await follower.until(last)

        await asyncio.to_thread(primary.stop, "immediate")
        await asyncio.to_thread(standby.promote)

        async def written() -> int:
            try:
                return await create_lock(channel_a, lock_pb_of("after", user="late"))
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.ALREADY_EXISTS:
                    raise  # a retried create that had committed: not what this test expects
                return 0

        revision = await eventually(written, within=60, interval=0.5, what="a write after failover")
        assert revision == last + 1
        seen = await follower.until(revision, within=60)
        assert [event.name for event in seen] == ["after"]
        assert (await cluster_status(channel_b)).epoch == follower.epoch
    finally:
        for channel in channels:
            await channel.close()
        for app in apps:
            await app.stop()


async def test_lock_wait_has_the_agents_on_every_replica_ack_at_once(
    replicas: Replicas, nodes: Cluster
) -> None:
    """`lock --wait` through A: its ack request reaches replica B, whose real agent acks
    at once (routine acks come at the heartbeat interval, 10 minutes once learnt)."""
    slow = timedelta(minutes=10)
    app_a, _ = await replicas("a", heartbeat=slow)
    app_b, _ = await replicas("b", heartbeat=slow)
    for name, app in (("node-a", app_a), ("node-b", app_b)):
        await nodes.start_agent(addresses=(f"127.0.0.1:{app.port}",), server_id=name, name=name)
    client = AuthClient.connect(f"127.0.0.1:{app_a.port}")
    try:

        async def both_connected() -> ClusterStatus | None:
            status = await client.status()
            where = {agent.server_id: agent.replica_id for agent in status.agents}
            return status if where == {"node-a": "a", "node-b": "b"} else None

        before: ClusterStatus = await eventually(both_connected, what="both agents listed")
        _, revision = await client.create_lock(Lock("waited", LockTarget(user="alice")))
        err = io.StringIO()
        await wait_for_agents(
            client,
            Console(out=io.StringIO(), err=err),
            before=before,
            revision=revision,
            within=timedelta(seconds=60),
        )
        assert "lock applied by 2/2 agents" in err.getvalue()
        assert app_b.agents.awaited == revision  # relayed to B, not waited out
    finally:
        await client.close()


async def test_agents_drop_the_commits_an_asynchronous_standby_lost_at_its_promotion(
    replicas: Replicas,
    nodes: Cluster,
    postgres_db: PostgresDatabase,
    postgres_standby: Callable[..., PostgresServer],
) -> None:
    """An asynchronous standby stops receiving WAL; a lock committed after that reaches
    the real agents on both replicas; the primary stops and the standby, which lacks
    that lock, is promoted. The replicas start a new epoch and the agents resnapshot:
    they hold what the new primary has, without the lost lock."""
    standby = await asyncio.to_thread(postgres_standby)
    primary, database = postgres_db.server, postgres_db.name
    dsn = (
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
        f"/{database}?target_session_attrs=read-write"
    )
    app_a, channel_a = await replicas("a", dsn=dsn)
    app_b, _ = await replicas("b", dsn=dsn)
    on_a = await nodes.start_agent(
        addresses=(f"127.0.0.1:{app_a.port}",), server_id="node-a", name="node-a"
    )
    on_b = await nodes.start_agent(
        addresses=(f"127.0.0.1:{app_b.port}",), server_id="node-b", name="node-b"
    )
    kept = await create_lock(channel_a, lock_pb_of("kept", user="x"))

    def replayed() -> bool:
        return standby.psql("SELECT revision FROM meta", database=database) == str(kept)

    await eventually(lambda: asyncio.to_thread(replayed), what="the standby to replay `kept`")
    await asyncio.to_thread(standby.stop)  # from here on the standby misses every commit
    lost = await create_lock(channel_a, lock_pb_of("lost", user="y"))
    old = await on_b.wait_revision(lost)
    await on_a.wait_revision(lost)

    await asyncio.to_thread(primary.stop)
    await asyncio.to_thread(standby.start)
    await asyncio.to_thread(standby.promote)

    for agent in (on_a, on_b):

        async def converged(agent: AgentHandle = agent) -> bool:
            status = await agent.status()
            return status.epoch != old.epoch and status.state == "synced"

        await eventually(converged, within=60, what=f"{agent.server_id} in a new epoch")
        assert set(agent.app.runtime.view.state.locks) == {"kept"}
        assert (await agent.status()).revision == kept

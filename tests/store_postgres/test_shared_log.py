"""What replicas share beside the Store port: commit wake-ups, the head, epochs, leases
and the replica directory — two store objects standing for two replicas."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lockd.auth.replica_set import AckRelay
from lockd.domain.ports import PutMode
from lockd.domain.replicas import AgentPresence, Leases, ReplicaDirectory, ReplicaRecord, SharedLog
from tests.contract.helpers import T0, lock
from tests.postgres_server import PostgresDatabase
from tests.store_postgres.conftest import OpenReplica
from tests.support import WAIT, eventually


async def test_the_store_implements_the_replica_ports(open_replica: OpenReplica) -> None:
    """PostgresStore is a SharedLog, Leases, ReplicaDirectory and AckRelay; once open,
    its commit listener already LISTENs."""
    store = await open_replica()
    assert store.listening
    assert isinstance(store, AckRelay)
    assert isinstance(store, SharedLog)
    assert isinstance(store, Leases)
    assert isinstance(store, ReplicaDirectory)


async def test_a_commit_on_one_replica_wakes_the_other(open_replica: OpenReplica) -> None:
    """B waits for commits after its revision; A's put wakes it (NOTIFY at commit), and
    B's log then holds A's event."""
    a, b = await open_replica(), await open_replica()
    await eventually(lambda: b.listening, what="B's listener")
    await b.wait_for_commit(0, 0.01)  # take note of the (re)connect
    waiting = asyncio.create_task(b.wait_for_commit(0, WAIT))
    await asyncio.sleep(0)
    assert not waiting.done()
    await a.put(lock("x"), PutMode.CREATE, T0)
    await asyncio.wait_for(waiting, WAIT)
    assert [event.name for event in await b.events_since(0, 10)] == ["x"]


async def test_an_ack_request_reaches_every_replica_and_a_malformed_one_is_ignored(
    open_replica: OpenReplica, postgres_db: PostgresDatabase
) -> None:
    """A's request_acks(epoch, revision) reaches the handlers of B (and A itself); a
    NOTIFY on the channel that is not `epoch:revision` reaches nobody."""
    a, b = await open_replica(), await open_replica()
    heard: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}
    a.on_ack_request(lambda epoch, revision: heard["a"].append((epoch, revision)))
    b.on_ack_request(lambda epoch, revision: heard["b"].append((epoch, revision)))
    await eventually(lambda: a.listening and b.listening, what="both listeners")
    await asyncio.to_thread(
        postgres_db.server.psql,
        "SELECT pg_notify('lockd_ack_request', 'no revision')",
        postgres_db.name,
    )
    await a.request_acks("e1", 7)
    await eventually(lambda: heard["a"] and heard["b"], what="the request on both")
    assert heard == {"a": [("e1", 7)], "b": [("e1", 7)]}


async def test_a_replicas_own_commit_wakes_only_the_other_replicas(
    open_replica: OpenReplica,
) -> None:
    """A's put wakes B's waiter; A's own waiter sleeps on (the write reaches A's hub as it
    returns, so A's tail need not read it back)."""
    a, b = await open_replica(), await open_replica()
    for store in (a, b):
        await store.wait_for_commit(0, 0.01)  # take note of the connect
    await a.put(lock("mine"), PutMode.CREATE, T0)
    started = time.monotonic()
    await b.wait_for_commit(0, WAIT)
    assert time.monotonic() - started < WAIT  # woken, not timed out
    started = time.monotonic()
    await a.wait_for_commit(0, 0.3)
    assert time.monotonic() - started >= 0.3


async def test_waiting_without_commits_returns_after_at_most(open_replica: OpenReplica) -> None:
    """With nothing committed, wait_for_commit returns once `at_most` has passed."""
    store = await open_replica()
    await eventually(lambda: store.listening, what="the listener")
    await store.wait_for_commit(0, 0.01)
    await asyncio.wait_for(store.wait_for_commit(0, 0.2), WAIT)


async def test_a_lost_listener_reconnects_and_the_waiter_catches_up(
    postgres_db: PostgresDatabase, open_replica: OpenReplica
) -> None:
    """The listener's connection is killed and a commit made while it is gone: the
    listener reconnects by itself and wakes the waiter, whose read of the log finds the
    commit it was never told about."""
    a, b = await open_replica(), await open_replica()
    await eventually(lambda: b.listening, what="B's listener")
    await b.wait_for_commit(0, 0.01)
    postgres_db.server.psql(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
        f"WHERE datname = '{postgres_db.name}' AND query LIKE 'LISTEN%'"
    )
    await a.put(lock("missed"), PutMode.CREATE, T0)
    await asyncio.wait_for(b.wait_for_commit(0, WAIT), WAIT)
    await eventually(lambda: b.listening, what="B's listener to reconnect")
    assert [event.name for event in await b.events_since(0, 10)] == ["missed"]


async def test_head_and_a_new_epoch_by_compare_and_set(open_replica: OpenReplica) -> None:
    """head() is the counter row; start_new_epoch swaps the epoch only when the caller
    saw the current one, keeping revision and resources."""
    a, b = await open_replica(), await open_replica()
    await a.put(lock("x"), PutMode.CREATE, T0)
    epoch, revision = await a.head()
    assert revision == 1
    new = await a.start_new_epoch(epoch)
    assert new != epoch
    assert await b.start_new_epoch(epoch) == new  # B saw the old one: it gets A's
    assert await b.head() == (new, 1)
    assert [resource.name for resource in (await b.snapshot()).resources] == ["x"]


async def test_a_lease_has_one_holder_and_passes_on_when_it_runs_out(
    open_replica: OpenReplica,
) -> None:
    """A takes the lease and renews it; B cannot take it meanwhile; once A's last term
    has run out (the database's clock: a renewal with no time left stands for a holder
    that stopped renewing) B takes it over; a release hands it on at once."""
    a, b = await open_replica(), await open_replica()
    term = timedelta(seconds=30)
    assert await a.acquire_lease("reaper", "a", term)
    assert not await b.acquire_lease("reaper", "b", term)
    assert await a.acquire_lease("reaper", "a", term)
    assert not await b.acquire_lease("reaper", "b", term)
    assert await a.acquire_lease("reaper", "a", timedelta(0))  # its term ends now
    assert await b.acquire_lease("reaper", "b", term)
    assert not await a.acquire_lease("reaper", "a", term)
    await b.release_lease("reaper", "b")
    assert await a.acquire_lease("reaper", "a", term)


async def test_replicas_racing_for_a_free_lease_get_one_holder(open_replica: OpenReplica) -> None:
    """Many concurrent tries for a free lease: exactly one holder wins."""
    stores = [await open_replica() for _ in range(3)]
    won = await asyncio.gather(
        *(
            store.acquire_lease("job", f"r{i}", timedelta(seconds=30))
            for i, store in enumerate(stores)
        )
    )
    assert sorted(won) == [False, False, True]


def replica(replica_id: str, agents: int = 1) -> ReplicaRecord:
    return ReplicaRecord(replica_id, f"{replica_id}:3025", True, 7, "e", agents, datetime.min)


def agent(agent_id: str, replica_id: str) -> AgentPresence:
    last_ack = datetime(2024, 5, 1, tzinfo=UTC)
    return AgentPresence(agent_id, replica_id, "10.0.0.1:1", True, "SYNCED", "e", 7, last_ack)


async def test_the_replica_directory_shows_every_replica_and_where_agents_are(
    open_replica: OpenReplica,
) -> None:
    """Reports from two replicas are listed by both; an agent that moved to B is B's;
    a replica's rows for agents it no longer reports go; forget removes a replica."""
    a, b = await open_replica(), await open_replica()
    await a.report_replica(replica("a", 2), [agent("n1", "a"), agent("n2", "a")])
    await b.report_replica(replica("b", 0), [])
    replicas, agents = await b.list_replicas()
    assert [(r.replica_id, r.agents) for r in replicas] == [("a", 2), ("b", 0)]
    assert all(r.heartbeat_at.tzinfo is not None for r in replicas)
    assert [(x.agent_id, x.replica_id) for x in agents["a"]] == [("n1", "a"), ("n2", "a")]
    assert agents["a"][0] == agent("n1", "a")
    assert agents["b"] == []

    await b.report_replica(replica("b"), [agent("n2", "b")])
    await a.report_replica(replica("a"), [agent("n1", "a")])
    _, agents = await a.list_replicas()
    assert {key: [x.agent_id for x in rows] for key, rows in agents.items()} == {
        "a": ["n1"],
        "b": ["n2"],
    }

    await a.forget_replica("a")
    replicas, agents = await b.list_replicas()
    assert [r.replica_id for r in replicas] == ["b"]
    assert [x.agent_id for x in agents["b"]] == ["n2"]


async def test_the_directory_reads_again_only_the_replicas_that_reported_since(
    open_replica: OpenReplica,
) -> None:
    """list_replicas skips `exclude` and every replica whose report time the caller
    already holds; a replica that reported again is read again."""
    a, b = await open_replica(), await open_replica()
    await a.report_replica(replica("a"), [agent("n1", "a")])
    await b.report_replica(replica("b"), [agent("n2", "b")])
    replicas, agents = await a.list_replicas(exclude="a")
    assert sorted(agents) == ["b"]
    known = {r.replica_id: r.heartbeat_at for r in replicas}
    _, agents = await a.list_replicas(exclude="a", known=known)
    assert agents == {}

    await b.report_replica(replica("b"), [agent("n2", "b"), agent("n3", "b")])
    _, agents = await a.list_replicas(exclude="a", known=known)
    assert [x.agent_id for x in agents["b"]] == ["n2", "n3"]


async def test_a_partial_report_keeps_unlisted_rows_and_a_left_replica_cannot_take_an_agent_back(
    open_replica: OpenReplica,
) -> None:
    """A report that is not complete upserts only what it lists (the replica's other rows
    stay); the replica an agent left, reporting it disconnected, does not take back the
    row of the replica the agent is connected to now — a connected report does."""
    a, b = await open_replica(), await open_replica()
    await a.report_replica(replica("a"), [agent("n1", "a"), agent("n2", "a")])
    await a.report_replica(replica("a"), [agent("n1", "a")], complete=False)
    _, agents = await b.list_replicas()
    assert [x.agent_id for x in agents["a"]] == ["n1", "n2"]

    await b.report_replica(replica("b"), [agent("n2", "b")], complete=False)
    left = replace(agent("n2", "a"), connected=False)
    await a.report_replica(replica("a"), [left], complete=False)
    _, agents = await b.list_replicas()
    assert [(x.agent_id, x.connected) for x in agents["b"]] == [("n2", True)]

    await a.report_replica(replica("a"), [agent("n2", "a")], complete=False)
    _, agents = await b.list_replicas()
    assert [x.agent_id for x in agents["a"]] == ["n1", "n2"]
    assert agents["b"] == []

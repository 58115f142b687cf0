"""The agent without its auth server: best_effort keeps enforcing, strict locks out,
changes made meanwhile arrive on reconnection, and the view survives an agent restart
(SPEC §5, DESIGN §4)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import structlog

from lockd.agent.journal import ViewJournal
from lockd.agent.persist import VIEW_FILE_NAME, ViewOwner
from lockd.client import SessionDenied
from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode
from lockd.domain.resources import ClusterAuthPreference, Role
from lockd.testing import SteppedClock
from tests.agent.helpers import (
    CLUSTER,
    AgentHandle,
    AuthHandle,
    Cluster,
    terminated_within,
    user_lock,
)
from tests.support import eventually, free_port

ALICE = Identity(user="alice", roles=("dev",))
BOB = Identity(user="bob", roles=("ops",))
CAROL = Identity(user="carol", roles=("dev",))
STALENESS = timedelta(minutes=1)


async def cut_off_until_stale(auth: AuthHandle, agent: AgentHandle, clock: SteppedClock) -> None:
    """Stop the auth server; once the agent knows it is cut off (no heartbeat can
    refresh its view any more), step its clock past `max_staleness`."""
    await auth.stop()
    await agent.wait_state("degraded")
    clock.advance(STALENESS.total_seconds() + 1)


async def test_best_effort_sessions_survive_an_auth_outage_and_locks_stay_enforced(
    cluster: Cluster,
) -> None:
    """Auth gone: the agent goes DEGRADED then STALE, best_effort sessions keep running,
    the last known locks still refuse alice, and others are still allowed."""
    cluster.clock = clock = SteppedClock()
    auth = await cluster.start_auth()
    _, revision = await auth.client().create_lock(user_lock("l1", message="nope"))
    agent = await cluster.start_agent(max_staleness=STALENESS)
    await agent.wait_revision(revision)
    bob = await agent.open(BOB)
    await cut_off_until_stale(auth, agent, clock)
    await agent.wait_state("stale")
    assert not bob.is_terminated()
    with pytest.raises(SessionDenied, match=r'^lock targeting User:"alice" is in force: nope$'):
        await agent.open(ALICE)
    carol = await agent.client.check_access(CAROL)
    assert (carol.allowed, carol.mode) == (True, LockingMode.BEST_EFFORT)
    assert (await agent.status()).sessions == 1


async def test_strict_role_sessions_are_locked_out_once_the_view_is_stale(
    cluster: Cluster,
) -> None:
    """A role with `lock: strict`: when the view goes STALE its sessions end with the
    preventive lock-out and its checks are refused; best_effort ones carry on. Back in
    sync, strict sessions are allowed again."""
    cluster.clock = clock = SteppedClock()
    auth = await cluster.start_auth()
    await auth.client().put_role(Role("ops", lock_mode=LockingMode.STRICT), PutMode.UPSERT)
    agent = await cluster.start_agent(max_staleness=STALENESS)
    strict, relaxed = await agent.open(BOB), await agent.open(ALICE)
    assert strict.decision.mode is LockingMode.STRICT
    assert relaxed.decision.mode is LockingMode.BEST_EFFORT
    await cut_off_until_stale(auth, agent, clock)
    assert await terminated_within(strict) == (STRICT_LOCKOUT_MESSAGE, "")
    assert (await agent.status()).state == "stale"
    refused = await agent.client.check_access(BOB)
    assert (refused.allowed, refused.reason, refused.mode) == (
        False,
        STRICT_LOCKOUT_MESSAGE,
        LockingMode.STRICT,
    )
    with pytest.raises(SessionDenied, match=STRICT_LOCKOUT_MESSAGE):
        await agent.open(BOB)
    assert not relaxed.is_terminated()
    await agent.wait_metric("lockd_agent_terminations_total", 1, reason="strict_stale")
    [line] = await agent.recorded("session.terminated")
    assert line.fields["reason"] == STRICT_LOCKOUT_MESSAGE
    assert line.fields["reason_kind"] == "strict_stale"

    await cluster.start_auth(db=auth.db, port=auth.port)
    await agent.wait_state("synced")
    assert (await agent.open(BOB)).decision.allowed


async def test_a_strict_cluster_preference_locks_out_every_session(
    cluster: Cluster,
) -> None:
    """`cluster_auth_preference` strict: every session, with or without roles, is strict."""
    cluster.clock = clock = SteppedClock()
    auth = await cluster.start_auth()
    await auth.client().set_cluster_auth_preference(ClusterAuthPreference(LockingMode.STRICT))
    agent = await cluster.start_agent(max_staleness=STALENESS)
    sessions = [await agent.open(ALICE), await agent.open(Identity(login="root"))]
    assert {session.decision.mode for session in sessions} == {LockingMode.STRICT}
    await cut_off_until_stale(auth, agent, clock)
    for session in sessions:
        assert await terminated_within(session) == (STRICT_LOCKOUT_MESSAGE, "")
    assert not (await agent.client.check_access(CAROL)).allowed


async def test_a_static_strict_locking_mode_reaches_the_agent(cluster: Cluster) -> None:
    """`auth_service.authentication.locking_mode: strict` in the auth config is what the
    agent enforces."""
    await cluster.start_auth(static_mode=LockingMode.STRICT)
    agent = await cluster.start_agent()
    assert (await agent.status()).cluster_locking_mode is LockingMode.STRICT
    assert (await agent.client.check_access(CAROL)).mode is LockingMode.STRICT


async def test_a_lock_created_while_the_agent_is_cut_off_arrives_on_reconnection(
    cluster: Cluster,
) -> None:
    """The agent's auth address goes dark; a lock is committed elsewhere on the same
    SQLite file; when the address answers again the agent resumes and ends the session."""
    first = await cluster.start_auth()
    await first.client().create_lock(user_lock("unrelated", user="mallory"))
    agent = await cluster.start_agent()
    session = await agent.open(ALICE)
    await first.stop()
    await agent.wait_state("degraded")

    elsewhere = await cluster.start_auth(db=first.db)  # another port: the agent cannot see it
    _, revision = await elsewhere.client().create_lock(user_lock("late", message="while away"))
    await elsewhere.stop()
    assert not session.is_terminated()
    assert (await agent.status()).revision < revision

    await cluster.start_auth(db=first.db, port=first.port)
    assert await terminated_within(session) == (
        'lock targeting User:"alice" is in force: while away',
        "late",
    )
    await agent.wait_revision(revision)
    # Resumed from its revision with events, not a snapshot.
    assert agent.metric("lockd_agent_resyncs_total", reason="too_old") == 0
    await agent.recorded("session.terminated", 1)


async def test_a_restarted_agent_enforces_its_persisted_view_while_auth_is_down(
    cluster: Cluster,
) -> None:
    """The last view is on disk: a new agent process, auth unreachable, still refuses
    alice (best_effort) and refuses strict interactions (never synced)."""
    auth = await cluster.start_auth()
    await auth.client().put_role(Role("ops", lock_mode=LockingMode.STRICT), PutMode.UPSERT)
    _, revision = await auth.client().create_lock(user_lock("l1", message="persisted"))
    agent = await cluster.start_agent()
    await agent.wait_revision(revision)
    await agent.stop()
    await auth.stop()
    assert agent.data_dir is not None
    assert (agent.data_dir / VIEW_FILE_NAME).exists()

    again = await cluster.start_agent(data_dir=agent.data_dir, name="again", wait_synced=False)
    status = await again.status()
    assert (status.state, status.revision, status.locks_in_force) == ("syncing", revision, 1)
    with pytest.raises(SessionDenied, match=r"is in force: persisted$"):
        await again.open(ALICE)
    strict = await again.client.check_access(BOB)
    assert (strict.allowed, strict.reason) == (False, STRICT_LOCKOUT_MESSAGE)
    assert (await again.client.check_access(CAROL)).allowed


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b"[" * 100_000,
        json.dumps({"format": "something-else/9", "view": {}}).encode(),
        b"",
    ],
    ids=["truncated", "binary", "deeply-nested", "foreign-format", "empty"],
)
async def test_a_corrupt_view_file_is_ignored_with_a_warning(
    cluster: Cluster, content: bytes
) -> None:
    """A view file that cannot be trusted is ignored (logged) and the agent starts empty."""
    auth = await cluster.start_auth()
    data_dir = cluster.directory / "corrupt"
    data_dir.mkdir()
    (data_dir / VIEW_FILE_NAME).write_bytes(content)
    with structlog.testing.capture_logs() as logs:
        agent = await cluster.start_agent(
            data_dir=data_dir, addresses=(f"127.0.0.1:{free_port()}",), wait_synced=False
        )
    warnings = [log for log in logs if log["event"] == "ignoring the persisted view"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    status = await agent.status()
    assert (status.state, status.revision, status.epoch, status.locks_in_force) == (
        "syncing",
        0,
        "",
        0,
    )
    assert not list(auth.app.agents.unordered())  # the agent never reached it


async def test_a_view_of_another_agent_or_cluster_is_not_loaded(cluster: Cluster) -> None:
    """A valid file written for another server_id is ignored: never trusted partially."""
    auth = await cluster.start_auth()
    _, revision = await auth.client().create_lock(user_lock("l1"))
    first = await cluster.start_agent(server_id="node-a")
    await first.wait_revision(revision)
    await first.stop()
    await auth.stop()
    with structlog.testing.capture_logs() as logs:
        other = await cluster.start_agent(
            server_id="node-b", data_dir=first.data_dir, name="b", wait_synced=False
        )
    assert any(log["event"] == "ignoring the persisted view" for log in logs)
    assert (await other.status()).locks_in_force == 0
    # Its data dir held a view, so it cannot know the cluster's modes: strict until synced.
    decision = await other.client.check_access(ALICE)
    assert (decision.allowed, decision.reason) == (False, STRICT_LOCKOUT_MESSAGE)


async def test_an_epoch_change_replaces_the_view_with_a_snapshot(cluster: Cluster) -> None:
    """The auth server comes back with another history (a fresh store): the agent takes
    its snapshot — old locks gone, new ones ending the sessions they hit."""
    first = await cluster.start_auth(memory=True)
    await first.client().create_lock(user_lock("old", user="bob"))
    agent = await cluster.start_agent()
    alice = await agent.open(ALICE)
    old_epoch = (await agent.status()).epoch
    await first.stop()

    second = await cluster.start_auth(memory=True, port=first.port)
    assert second.app.hub.epoch != old_epoch
    await second.client().create_lock(user_lock("new", message="fresh history"))
    assert await terminated_within(alice) == (
        'lock targeting User:"alice" is in force: fresh history',
        "new",
    )

    async def switched() -> bool:
        return (await agent.status()).epoch == second.app.hub.epoch

    await eventually(switched, what="the agent to take the new epoch")
    await agent.wait_revision(second.revision)
    assert (await agent.open(BOB)).decision.allowed
    assert agent.metric("lockd_agent_resyncs_total", reason="epoch_changed") == 1


async def test_the_next_auth_address_is_tried_when_one_is_down(cluster: Cluster) -> None:
    """First address refuses connections: the agent moves on and syncs from the second."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(addresses=(f"127.0.0.1:{free_port()}", auth.address))
    _, revision = await auth.client().create_lock(user_lock("l1"))
    await agent.wait_revision(revision)
    assert not (await agent.client.check_access(ALICE)).allowed


async def test_an_acknowledged_lock_is_on_disk_without_a_clean_stop(cluster: Cluster) -> None:
    """Once the server shows the agent at a revision (its ack), the saved view holds it,
    so a crash (no clean stop) still leaves it enforced on the next start."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(server_id="node-p", name="p")
    client = auth.client()
    _, revision = await client.create_lock(user_lock("l1"))

    async def acknowledged() -> bool:
        status = await client.status(await_revision=revision)
        return any(a.applied_revision >= revision for a in status.agents)

    await eventually(acknowledged, what="the agent to acknowledge the lock")
    assert agent.data_dir is not None
    journal = ViewJournal(agent.data_dir, ViewOwner(CLUSTER, "node-p"))
    recovered = await asyncio.to_thread(journal.recover)
    assert recovered.state is not None
    assert recovered.state.revision >= revision
    assert "l1" in recovered.state.locks


async def test_a_stopping_agent_ends_strict_sessions_and_keeps_best_effort_ones(
    cluster: Cluster,
) -> None:
    """When the agent shuts down, its strict sessions are told to end with the lock-out
    text (cause agent_unavailable); a best_effort session is kept (not a lock: the
    library registers it again once an agent answers)."""
    auth = await cluster.start_auth()
    await auth.client().put_role(Role("ops", lock_mode=LockingMode.STRICT), PutMode.UPSERT)
    agent = await cluster.start_agent()
    kept = await agent.open(ALICE)
    strict = await agent.open(Identity(user="olga", roles=("ops",)))
    await agent.app.stop()
    async with asyncio.timeout(20):
        ended = await strict.terminated()
    assert (ended.reason, ended.cause) == (STRICT_LOCKOUT_MESSAGE, "agent_unavailable")
    assert not kept.is_terminated()

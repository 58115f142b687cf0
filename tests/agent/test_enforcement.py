"""A real agent enforcing locks from a real auth server on sidecar sessions (SPEC §2, §3, §9)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from lockd.client import SessionDenied
from lockd.domain.errors import PreconditionError
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.testing import SteppedClock
from tests.agent.helpers import Cluster, terminated_within, user_lock
from tests.support import eventually

ALICE = Identity(user="alice", roles=("dev",), login="root")
BOB = Identity(user="bob", roles=("ops",), login="root")


async def test_a_new_lock_terminates_the_matching_session_with_the_spec_message(
    cluster: Cluster,
) -> None:
    """`lock targeting User:"alice" is in force: <msg>` and the lock's name reach the
    sidecar of alice's live session."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    session = await agent.open(ALICE)
    assert session.decision.allowed
    await auth.client().create_lock(user_lock("l1", message="Suspicious activity."))
    assert await terminated_within(session) == (
        'lock targeting User:"alice" is in force: Suspicious activity.',
        "l1",
    )
    assert session.is_terminated()


async def test_a_session_of_a_locked_user_is_denied_with_the_message(cluster: Cluster) -> None:
    """A lock that exists before registration refuses the session (SessionDenied)."""
    auth = await cluster.start_auth()
    _, revision = await auth.client().create_lock(user_lock("l1", message="Go away."))
    agent = await cluster.start_agent()
    await agent.wait_revision(revision)
    with pytest.raises(SessionDenied) as denied:
        await agent.open(ALICE)
    assert str(denied.value) == 'lock targeting User:"alice" is in force: Go away.'
    assert denied.value.decision.lock_name == "l1"
    assert (await agent.status()).sessions == 0


async def test_an_unrelated_lock_leaves_every_session_running(cluster: Cluster) -> None:
    """Locks on another user, role, login or server hit nobody here."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    sessions = [await agent.open(ALICE), await agent.open(BOB)]
    admin = auth.client()
    await admin.create_lock(user_lock("u", user="mallory"))
    await admin.create_lock(Lock("r", LockTarget(role="admins")))
    await admin.create_lock(Lock("l", LockTarget(login="postgres")))
    _, revision = await admin.create_lock(Lock("s", LockTarget(server_id="node-2")))
    await agent.wait_revision(revision)
    assert not any(session.is_terminated() for session in sessions)
    assert (await agent.status()).sessions == 2
    assert (await agent.client.check_access(ALICE)).allowed


async def test_deleting_a_lock_allows_new_sessions_and_ended_ones_stay_ended(
    cluster: Cluster,
) -> None:
    """After the delete alice may register again; the terminated session is not revived."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    old = await agent.open(ALICE)
    admin = auth.client()
    await admin.create_lock(user_lock("l1"))
    await terminated_within(old)
    revision = await admin.delete_lock("l1")
    await agent.wait_revision(revision)
    new = await agent.open(ALICE)
    assert new.decision.allowed
    assert old.is_terminated()
    assert (await agent.status()).sessions == 1


async def test_an_expiring_lock_denies_until_expires_and_ends_nothing_afterwards(
    cluster: Cluster,
) -> None:
    """Until `expires` new sessions are refused; once the clock passes it they are
    allowed, and the EXPIRE event that follows terminates none of them (a later lock
    on the same stream is the first thing that ends the session)."""
    cluster.clock = stepped = SteppedClock()
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    expires = stepped.now() + timedelta(hours=1)
    _, revision = await auth.client().create_lock(
        Lock("brief", LockTarget(user="alice"), message="cool off", expires=expires)
    )
    await agent.wait_revision(revision)
    decision = await agent.client.check_access(ALICE)
    assert (decision.allowed, decision.lock_name) == (False, "brief")

    stepped.advance(3600)  # the agent decides on its own clock, before any EXPIRE event
    assert (await agent.client.check_access(ALICE)).allowed
    session = await agent.open(ALICE)
    # The auth server's reaper commits EXPIRE (one more revision); it ends nothing.
    await agent.wait_revision(revision + 1)
    assert auth.audit.of("lock.expired")
    assert not session.is_terminated()
    await auth.client().create_lock(user_lock("later", message="after expiry"))
    assert await terminated_within(session) == (
        'lock targeting User:"alice" is in force: after expiry',
        "later",
    )


async def test_a_role_lock_hits_only_sessions_with_that_role(cluster: Cluster) -> None:
    """`role: dev` ends alice (dev), keeps bob (ops), and refuses new dev sessions."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    alice, bob = await agent.open(ALICE), await agent.open(BOB)
    _, revision = await auth.client().create_lock(Lock("devs", LockTarget(role="dev")))
    assert await terminated_within(alice) == ('lock targeting Role:"dev" is in force', "devs")
    await agent.wait_revision(revision)
    assert not bob.is_terminated()
    with pytest.raises(SessionDenied):
        await agent.open(Identity(user="carol", roles=("ops", "dev")))
    assert (await agent.open(Identity(user="carol", roles=("ops",)))).decision.allowed


async def test_a_lock_on_this_agents_server_id_ends_and_denies_every_session(
    cluster: Cluster,
) -> None:
    """A `server_id` lock on this agent hits every session, whoever it belongs to, and
    every new registration and access check; other agents are not affected."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(server_id="node-1")
    other = await cluster.start_agent(server_id="node-2", name="other")
    sessions = [await agent.open(ALICE), await agent.open(BOB), await agent.open(Identity())]
    spared = await other.open(ALICE)
    _, revision = await auth.client().create_lock(
        Lock("quarantine", LockTarget(server_id="node-1"), message="compromised host")
    )
    expected = ('lock targeting ServerID:"node-1" is in force: compromised host', "quarantine")
    for session in sessions:
        assert await terminated_within(session) == expected
    for identity in (ALICE, BOB, Identity(user="anyone")):
        with pytest.raises(SessionDenied):
            await agent.open(identity)
        assert not (await agent.client.check_access(identity)).allowed
    await other.wait_revision(revision)
    assert not spared.is_terminated()
    await agent.wait_metric("lockd_agent_terminations_total", 3, reason="server_lock")


async def test_check_access_and_get_status_over_the_socket(cluster: Cluster) -> None:
    """CheckAccess decides without registering; GetStatus reports the view."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(server_id="node-7")
    _, revision = await auth.client().create_lock(user_lock("l1", message="no"))
    status = await agent.wait_revision(revision)
    assert (status.server_id, status.state, status.revision) == ("node-7", "synced", revision)
    assert status.epoch == auth.app.hub.epoch
    assert (status.locks_in_force, status.sessions) == (1, 0)
    assert status.cluster_locking_mode is not None
    assert status.cluster_locking_mode.value == "best_effort"
    assert status.freshness_age < timedelta(seconds=10)

    denied = await agent.client.check_access(ALICE)
    assert (denied.allowed, denied.reason, denied.lock_name, denied.mode.value) == (
        False,
        'lock targeting User:"alice" is in force: no',
        "l1",
        "best_effort",
    )
    allowed = await agent.client.check_access(BOB)
    assert (allowed.allowed, allowed.reason, allowed.lock_name) == (True, "", "")
    assert (await agent.status()).sessions == 0


async def test_closing_a_session_unregisters_it(cluster: Cluster) -> None:
    """When the sidecar ends its session, the agent forgets it."""
    await cluster.start_auth()
    agent = await cluster.start_agent()
    async with agent.client.open_session(ALICE, session_id="ssh-42") as session:
        assert session.session_id == "ssh-42"
        assert (await agent.status()).sessions == 1

    async def gone() -> bool:
        return (await agent.status()).sessions == 0

    await eventually(gone, what="the session to be unregistered")
    async with agent.client.open_session(ALICE, session_id="ssh-42"):  # the id is free again
        pass


async def test_a_lock_committed_while_sessions_register_never_lets_one_through(
    cluster: Cluster,
) -> None:
    """Many registrations for alice race the lock's commit: each one is either refused
    or later terminated by the lock — none stays open."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    admin = auth.client()
    for round_ in range(3):
        name = f"race-{round_}"
        allowed: list[tuple[str, str]] = []  # (reason, lock) of each terminated session
        denied: list[str] = []  # lock names of the refusals

        async def register(
            index: int,
            allowed: list[tuple[str, str]] = allowed,
            denied: list[str] = denied,
        ) -> None:
            await asyncio.sleep(0.002 * (index % 10))
            try:
                async with agent.client.open_session(ALICE) as session:
                    allowed.append(await terminated_within(session))
            except SessionDenied as refusal:
                denied.append(refusal.decision.lock_name)

        tasks = [asyncio.create_task(register(index)) for index in range(40)]
        await asyncio.sleep(0.01)
        await admin.create_lock(user_lock(name))
        await asyncio.gather(*tasks)
        assert set(allowed) <= {('lock targeting User:"alice" is in force', name)}
        assert set(denied) <= {name}
        assert len(allowed) + len(denied) == 40
        assert (await agent.status()).sessions == 0
        await admin.delete_lock(name)
        await agent.wait_revision(auth.revision)


async def test_a_live_session_id_cannot_be_registered_twice(cluster: Cluster) -> None:
    """A second OpenSession with the id of a live session is refused (FAILED_PRECONDITION,
    a PreconditionError for the client) and the first session is left registered."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    first = await agent.open(ALICE, session_id="dup")
    with pytest.raises(PreconditionError, match='session "dup" is already registered'):
        await agent.open(BOB, session_id="dup")
    assert (await agent.status()).sessions == 1
    await auth.client().create_lock(user_lock("l1"))
    assert (await terminated_within(first))[1] == "l1"

"""The sidecar session channel (docs/sidecar-api.md) against a real agent on a real Unix
socket: batches, batched terminations, the registration race, bad input, the local view."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest

from lockd.client import (
    AgentClient,
    SessionDenied,
    SessionMetadata,
    SessionProtocol,
    SessionRequest,
    SyncAgentClient,
)
from lockd.domain.errors import PreconditionError
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.v1 import agent_service_pb2 as pb
from tests.agent.helpers import Cluster, terminated_within, user_lock
from tests.support import WAIT, eventually

ALICE = Identity(user="alice", roles=("dev",), login="root")
BOB = Identity(user="bob", roles=("ops",), login="root")
SSH = SessionMetadata(SessionProtocol.SSH, "192.0.2.7:50022", "node-1")


async def test_a_batch_registers_allowed_sessions_and_refuses_locked_ones(
    cluster: Cluster,
) -> None:
    """One batch, one answer: bob's sessions registered, alice's refused with the lock's
    message, each result with its own decision."""
    auth = await cluster.start_auth()
    _, revision = await auth.client().create_lock(user_lock("l1", message="Go away."))
    agent = await cluster.start_agent(persist=False)
    await agent.wait_revision(revision)
    requests = [SessionRequest(ALICE, SSH, "a-1"), SessionRequest(BOB, SSH, "b-1")]
    refused, allowed = await agent.client.open_sessions(requests)
    assert not refused.decision.allowed
    assert refused.decision.reason == 'lock targeting User:"alice" is in force: Go away.'
    assert refused.decision.lock_name == "l1"
    assert allowed.decision.allowed
    assert allowed.session_id == "b-1"
    status = await agent.status()
    assert (status.sessions, status.channels) == (1, 1)
    await agent.client.close_sessions([allowed])
    await eventually(lambda: agent.app.runtime.view.session_count == 0, what="unregistered")


async def test_a_lock_ends_every_hit_session_of_a_channel_in_one_message(
    cluster: Cluster,
) -> None:
    """200 of 1,000 sessions on one channel are alice's: a lock on alice ends exactly
    those, all carried by one termination message; the others stay registered."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    client = agent.client
    alice = await client.open_sessions([SessionRequest(ALICE, SSH, f"a-{i}") for i in range(200)])
    others = await client.open_sessions(
        [SessionRequest(Identity(user=f"u{i}"), SSH, f"o-{i}") for i in range(800)]
    )
    assert all(s.decision.allowed for s in alice + others)
    await auth.client().create_lock(user_lock("l1", message="Suspicious activity."))
    ended = [await terminated_within(session) for session in alice]
    assert set(ended) == {('lock targeting User:"alice" is in force: Suspicious activity.', "l1")}
    # One agent message carries every id: the library builds one termination per message.
    assert len({id(await session.terminated()) for session in alice}) == 1
    assert not any(session.is_terminated() for session in others)
    assert (await agent.status()).sessions == 800


async def test_a_lock_during_a_registration_burst_lets_no_hit_session_slip(
    cluster: Cluster,
) -> None:
    """While 3,000 sessions of alice register in bursts, a lock on alice arrives: every
    one of them is either refused or terminated; none stays live."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    client = agent.client

    async def burst(start: int) -> list[Any]:
        return await client.open_sessions(
            [SessionRequest(ALICE, SSH, f"a-{start + i}") for i in range(100)]
        )

    bursts = [asyncio.create_task(burst(index * 100)) for index in range(30)]
    await asyncio.sleep(0)
    await auth.client().create_lock(user_lock("race"))
    sessions = [session for batch in await asyncio.gather(*bursts) for session in batch]
    allowed = [session for session in sessions if session.decision.allowed]
    for session in allowed:
        assert (await terminated_within(session))[1] == "race"
    refused = [session for session in sessions if not session.decision.allowed]
    assert all(session.decision.lock_name == "race" for session in refused)
    assert len(allowed) + len(refused) == 3000
    assert (await agent.status()).sessions == 0


async def test_session_start_and_rejection_are_audited_with_their_metadata(
    cluster: Cluster,
) -> None:
    """session.start and session.rejected carry protocol, remote address, target,
    started_at and the sidecar's name; sessions are counted by protocol."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    async with AgentClient.connect(agent.socket, sidecar="ssh@node-1") as client:
        async with client.open_session(BOB, "b-1", SSH):
            await agent.wait_metric("lockd_agent_sessions_by_protocol", 1.0, protocol="ssh")
            start = (await agent.recorded("session.start"))[0].fields
            assert start["session_id"] == "b-1"
            assert start["sidecar"] == "ssh@node-1"
            assert start["protocol"] == "ssh"
            assert start["remote_address"] == "192.0.2.7:50022"
            assert start["target_resource"] == "node-1"
            assert start["login"] == "root"
            assert start["started_at"]
            _, revision = await auth.client().create_lock(user_lock("l1", user="bob"))
            await agent.wait_revision(revision)
        with pytest.raises(SessionDenied):
            async with client.open_session(BOB, "b-2", SSH):
                pass
    rejected = (await agent.recorded("session.rejected"))[0].fields
    assert rejected["session_id"] == "b-2"
    assert rejected["lock"] == "l1"
    assert rejected["reason"] == 'lock targeting User:"bob" is in force'
    terminated = (await agent.recorded("session.terminated"))[0].fields
    assert terminated["protocol"] == "ssh"
    assert terminated["remote_address"] == "192.0.2.7:50022"
    assert agent.metric("lockd_agent_session_registrations_total", result="denied") == 1
    assert agent.metric("lockd_agent_termination_propagation_seconds_count") == 1


async def _raw_channel(socket: str, *messages: bytes) -> grpc.aio.AioRpcError:
    """Send raw frames on a SessionChannel; the status it ends with."""
    async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
        method: Any = channel.stream_stream("/lockd.v1.AgentService/SessionChannel")
        call = method()
        for message in messages:
            await call.write(message)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await _read_to_end(call)
        return ended.value


async def _read_to_end(call: Any) -> None:
    async with asyncio.timeout(WAIT):
        while await call.read() is not grpc.aio.EOF:
            pass


async def test_garbage_and_oversized_messages_end_only_that_channel(cluster: Cluster) -> None:
    """Undecodable bytes, a missing hello, a too large batch and a message over the size
    bound each end their own channel with a clear status; a well-behaved sidecar's
    sessions stay registered and protected."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    session = await agent.open(ALICE)
    socket = str(agent.socket)
    hello = pb.SidecarMessage(hello=pb.ChannelHello(sidecar="bad")).SerializeToString()
    garbage = await _raw_channel(socket, b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    assert garbage.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "could not decode a SidecarMessage" in (garbage.details() or "")
    no_hello = pb.SidecarMessage(unregister=pb.UnregisterSessions(session_ids=["x"]))
    refused = await _raw_channel(socket, no_hello.SerializeToString())
    assert refused.details() == "the first SidecarMessage must be a ChannelHello"
    after_hello = await _raw_channel(socket, hello, b"\xff\xff\xff")
    assert after_hello.code() is grpc.StatusCode.INVALID_ARGUMENT
    sessions = [pb.SessionRegistration(session_id=f"s{i}") for i in range(1001)]
    big_batch = pb.SidecarMessage(register=pb.RegisterSessions(sessions=sessions))
    too_many = await _raw_channel(socket, hello, big_batch.SerializeToString())
    assert "at most 1000 per message" in (too_many.details() or "")
    huge = pb.SidecarMessage(hello=pb.ChannelHello(sidecar="x" * (2 << 20)))
    oversized = await _raw_channel(socket, huge.SerializeToString())
    assert oversized.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await agent.status()).sessions == 1
    await auth.client().create_lock(user_lock("l1"))
    assert (await terminated_within(session))[1] == "l1"


async def test_an_invalid_registration_fails_alone(cluster: Cluster) -> None:
    """A too long session id or an unknown protocol value fails that session with a
    clear error; the rest of its batch registers."""
    await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    bad_id, good = await agent.client.open_sessions(
        [SessionRequest(BOB, SSH, "x" * 129), SessionRequest(BOB, SSH, "ok")]
    )
    assert not bad_id.decision.allowed
    assert bad_id.decision.reason == "session_id is longer than 128 characters"
    assert good.decision.allowed
    assert agent.metric("lockd_agent_session_registrations_total", result="invalid") == 1


async def test_the_local_view_decides_as_the_agent_does(cluster: Cluster) -> None:
    """With local_view the sidecar's copy follows the agent: a lock arrives and the local
    decision refuses with the same text; deleted, it allows again."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    async with AgentClient.connect(agent.socket, local_view=True) as client:
        await eventually(lambda: client.sessions.copy and client.sessions.copy.ready())
        assert client.check_access_local(ALICE).allowed
        admin = auth.client()
        await admin.create_lock(user_lock("l1", message="nope"))
        await eventually(lambda: not client.check_access_local(ALICE).allowed)
        local = client.check_access_local(ALICE)
        remote = await agent.client.check_access(ALICE)
        assert local == remote
        assert local.reason == 'lock targeting User:"alice" is in force: nope'
        await admin.create_lock(Lock("s", LockTarget(server_id="node-1")))
        await eventually(lambda: not client.check_access_local(BOB).allowed)
        await admin.delete_lock("l1")
        await admin.delete_lock("s")
        await eventually(lambda: client.check_access_local(ALICE).allowed)
        assert (await client.check_access(ALICE)).mode is LockingMode.BEST_EFFORT


async def test_the_sync_facade_serves_a_thread(cluster: Cluster) -> None:
    """SyncAgentClient from a plain thread: a session opens, wait_terminated returns None
    while nothing ended, and the lock's message once a lock hits it."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    opened = threading.Event()

    def sidecar() -> tuple[bool, object, str]:
        with SyncAgentClient.connect(agent.socket, sidecar="sync") as client:
            with client.open_session(BOB, metadata=SSH) as session:
                idle = session.wait_terminated(timeout=0.05)
                opened.set()
                termination = session.wait_terminated(timeout=WAIT)
            return client.check_access(BOB).allowed, idle, termination.reason if termination else ""

    thread = asyncio.create_task(asyncio.to_thread(sidecar))
    await asyncio.to_thread(opened.wait, WAIT)
    await auth.client().create_lock(user_lock("l1", user="bob", message="bye"))
    allowed, idle, reason = await thread
    assert (allowed, idle, reason) == (False, None, 'lock targeting User:"bob" is in force: bye')


async def test_a_batch_with_a_repeated_or_live_id_is_refused_whole(cluster: Cluster) -> None:
    """An id twice in one batch, or the id of a live session, fails the call before
    anything is sent: no session of that batch is registered."""
    await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    client = agent.client
    with pytest.raises(PreconditionError, match='session "x" is already registered'):
        await client.open_sessions([SessionRequest(BOB, SSH, "x"), SessionRequest(BOB, SSH, "x")])
    (live,) = await client.open_sessions([SessionRequest(BOB, SSH, "y")])
    with pytest.raises(PreconditionError, match='session "y" is already registered'):
        await client.open_sessions([SessionRequest(BOB, SSH, "z"), SessionRequest(BOB, SSH, "y")])
    assert live.decision.allowed
    assert (await agent.status()).sessions == 1


async def test_a_failing_termination_callback_stops_no_other_session(cluster: Cluster) -> None:
    """An on_terminated callback that raises is logged; the other sessions ended by the
    same message still get theirs, and awaiting terminated() still works."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    first, second = await agent.client.open_sessions(
        [SessionRequest(ALICE, SSH, "a-1"), SessionRequest(ALICE, SSH, "a-2")]
    )
    delivered: list[str] = []

    def fail(_: object) -> None:
        raise RuntimeError("a sidecar bug")

    first.on_terminated(fail)
    second.on_terminated(lambda termination: delivered.append(termination.lock_name))
    await auth.client().create_lock(user_lock("l1"))
    assert (await terminated_within(first))[1] == "l1"
    assert (await terminated_within(second))[1] == "l1"
    assert delivered == ["l1"]

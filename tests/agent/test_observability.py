"""What operators see of an agent: its socket, health, metrics and audit lines."""

from __future__ import annotations

import json
import os
import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.client import SessionDenied
from lockd.domain.identity import Identity
from tests.agent.helpers import CLUSTER, Cluster, user_lock
from tests.support import eventually, free_port

ALICE = Identity(user="alice", roles=("dev",), login="root", device="laptop-1")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize(("mode", "expected"), [(None, 0o660), (0o600, 0o600)])
async def test_the_socket_gets_its_configured_mode(
    cluster: Cluster, mode: int | None, expected: int
) -> None:
    """The Unix socket's permission bits are socket_mode (default 0660)."""
    await cluster.start_auth()
    agent = await cluster.start_agent(socket_mode=mode)
    assert stat.S_ISSOCK(os.stat(agent.socket).st_mode)
    assert stat.S_IMODE(os.stat(agent.socket).st_mode) == expected


async def test_health_turns_serving_only_after_the_first_sync(cluster: Cluster) -> None:
    """Until the agent has synced with an auth server its gRPC health is NOT_SERVING,
    for the whole server and for AgentService."""
    port = free_port()
    agent = await cluster.start_agent(addresses=(f"127.0.0.1:{port}",), wait_synced=False)
    health = health_pb2_grpc.HealthStub(agent.client.channel)

    async def status(service: str = "") -> int:
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        return int(response.status)

    assert await status() == NOT_SERVING
    assert await status("lockd.v1.AgentService") == NOT_SERVING
    assert (await agent.status()).state == "syncing"

    await cluster.start_auth(port=port)

    async def serving() -> bool:
        return bool(await status() == SERVING)

    await eventually(serving, what="health SERVING")
    assert await status("lockd.v1.AgentService") == SERVING
    assert (await agent.status()).state == "synced"


async def test_an_unknown_health_service_is_not_found(cluster: Cluster) -> None:
    """Only the server ("") and AgentService are known to the health service."""
    await cluster.start_auth()
    agent = await cluster.start_agent()
    health = health_pb2_grpc.HealthStub(agent.client.channel)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert error.value.code() is grpc.StatusCode.NOT_FOUND


async def test_agent_metrics_move_with_sessions_checks_locks_and_state(cluster: Cluster) -> None:
    """lockd_agent_*: revision, state, sessions, access checks by decision and mode,
    terminations by reason, lock propagation."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent()
    assert agent.metric("lockd_agent_state", state="synced") == 1
    assert agent.metric("lockd_agent_state", state="syncing") == 0
    session = await agent.open(ALICE)
    await agent.open(Identity(user="bob"))
    assert agent.metric("lockd_agent_sessions") == 2
    assert (
        agent.metric("lockd_agent_access_checks_total", decision="allowed", mode="best_effort") == 2
    )

    _, revision = await auth.client().create_lock(user_lock("l1", message="metrics"))
    await session.terminated()
    await agent.wait_revision(revision)
    assert agent.metric("lockd_agent_view_revision") == revision
    await agent.wait_metric("lockd_agent_terminations_total", 1, reason="lock")
    assert agent.metric("lockd_agent_sessions") == 1
    assert agent.metric("lockd_agent_lock_propagation_seconds_count") == 1
    assert agent.metric("lockd_agent_view_age_seconds") < 30

    with pytest.raises(SessionDenied):
        await agent.open(ALICE)
    await agent.client.check_access(ALICE)
    assert (
        agent.metric("lockd_agent_access_checks_total", decision="denied", mode="best_effort") == 2
    )

    await auth.stop()
    await eventually(
        lambda: agent.metric("lockd_agent_state", state="degraded") == 1, what="degraded gauge"
    )
    assert agent.metric("lockd_agent_state", state="synced") == 0


async def test_audit_records_terminations_and_denials_with_the_user_facing_text(
    cluster: Cluster,
) -> None:
    """session.terminated (SS001W) and access.denied (AC001W) carry the exact reason, the
    lock's name, the agent's server_id and the cluster; each is one JSON line."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(server_id="node-9")
    session = await agent.open(ALICE, session_id="ssh-1")
    await auth.client().create_lock(user_lock("l1", message="audited"))
    await session.terminated()
    reason = 'lock targeting User:"alice" is in force: audited'
    [terminated] = await agent.recorded("session.terminated")
    line = json.loads(terminated.to_json())
    assert line["event"] == "session.terminated"
    assert line["code"] == "SS001W"
    assert line["cluster"] == CLUSTER
    assert line["time"].endswith("Z")
    assert {key: line[key] for key in ("session_id", "user", "server_id", "reason")} == {
        "session_id": "ssh-1",
        "user": "alice",
        "server_id": "node-9",
        "reason": reason,
    }
    assert (line["reason_kind"], line["lock"]) == ("lock", "l1")

    await agent.client.check_access(ALICE)
    [denied] = await agent.recorded("access.denied")
    line = json.loads(denied.to_json())
    assert (line["code"], line["user"], line["reason"], line["mode"], line["lock"]) == (
        "AC001W",
        "alice",
        reason,
        "best_effort",
        "l1",
    )
    assert line["identity"] == {
        "user": "alice",
        "roles": ["dev"],
        "login": "root",
        "device": "laptop-1",
        "server_id": "node-9",
    }
    assert not agent.audit.of("session.terminated")[1:]

"""GetClusterStatus with a hold (`lock --wait`): answered once every connected agent has
acknowledged the awaited revision, or when the hold runs out; its bounds checked."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from tests.api.conftest import Servers
from tests.api.helpers import Follower, WatchClient, create_lock, lock_pb_of, read_snapshot
from tests.support import eventually

# Far longer than any test waits for a held answer: one that came is not the hold's end.
LONG_HOLD = Duration(seconds=10)


def held(revision: int, hold: Duration) -> cluster_pb.GetClusterStatusRequest:
    return cluster_pb.GetClusterStatusRequest(await_revision=revision, hold=hold)


def applied(response: cluster_pb.GetClusterStatusResponse) -> dict[str, int]:
    return {agent.server_id: agent.applied_revision for agent in response.agents}


async def following(channel: grpc.aio.Channel, agent_id: str) -> Follower:
    """An agent past its snapshot, which it acknowledged."""
    client = await WatchClient.open(channel, agent_id=agent_id)
    snapshot = await read_snapshot(client)
    await client.ack(snapshot.begin.epoch, snapshot.begin.revision)
    return Follower(client, snapshot.begin.epoch, snapshot.begin.revision)


async def test_a_held_status_answers_when_the_last_agent_acks(servers: Servers) -> None:
    """Held for a revision two agents have not acknowledged, the status comes when the
    second of them acks it, long before the hold ends, showing both at the revision."""
    server = await servers.start()
    channel = server.channel()
    first, second = await following(channel, "node-1"), await following(channel, "node-2")
    revision = await create_lock(channel, lock_pb_of("waited"))
    stub = ClusterServiceStub(channel)

    async def status() -> cluster_pb.GetClusterStatusResponse:
        return await stub.GetClusterStatus(held(revision, LONG_HOLD))

    answer = asyncio.create_task(status())
    for follower in (first, second):
        await follower.until(revision)
    await first.client.ack(first.epoch, revision)
    assert not answer.done()  # one agent is still pending
    await second.client.ack(second.epoch, revision)
    response = await asyncio.wait_for(answer, timeout=5)
    assert not response.hold_expired
    assert applied(response) == {"node-1": revision, "node-2": revision}
    for follower in (first, second):
        follower.client.cancel()


async def test_a_held_status_runs_out_with_the_silent_agent_pending(servers: Servers) -> None:
    """An agent that never acks the revision: the status comes when the hold runs out,
    says so, and shows the agent short of the revision."""
    server = await servers.start()
    channel = server.channel()
    silent = await following(channel, "node-silent")
    revision = await create_lock(channel, lock_pb_of("waited"))
    short = Duration(nanos=200_000_000)
    response = await ClusterServiceStub(channel).GetClusterStatus(held(revision, short))
    assert response.hold_expired
    assert applied(response)["node-silent"] < revision
    silent.client.cancel()


async def test_a_gone_agent_does_not_hold_the_status(servers: Servers) -> None:
    """An agent that disconnected before acknowledging is not waited for: with no
    connected agent pending the status comes at once, not when the hold ends."""
    server = await servers.start()
    channel = server.channel()
    gone = await following(channel, "node-gone")
    revision = await create_lock(channel, lock_pb_of("waited"))
    gone.client.cancel()
    stub = ClusterServiceStub(channel)

    async def disconnected() -> bool:
        agents = (await stub.GetClusterStatus(cluster_pb.GetClusterStatusRequest())).agents
        return not any(agent.connected for agent in agents)

    await eventually(disconnected, what="the agent to show as disconnected")
    response = await asyncio.wait_for(stub.GetClusterStatus(held(revision, LONG_HOLD)), timeout=5)
    assert not response.hold_expired
    assert applied(response)["node-gone"] < revision


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (held(5, Duration(seconds=-1)), "hold must be between 0 and 10s"),
        (held(5, Duration(seconds=11)), "hold must be between 0 and 10s"),
        (held(0, Duration(seconds=1)), "hold needs await_revision"),
        (held(5, Duration(seconds=1, nanos=-1)), "hold: duration seconds and nanos have"),
    ],
)
async def test_a_hold_out_of_bounds_is_invalid_argument(
    servers: Servers, request_: cluster_pb.GetClusterStatusRequest, message: str
) -> None:
    """A negative hold, one over 10 s, one without await_revision or a malformed one:
    INVALID_ARGUMENT saying which, before anything waits."""
    server = await servers.start()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ClusterServiceStub(server.channel()).GetClusterStatus(request_)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (raised.value.details() or "")

"""gRPC health and reflection, graceful stop, and what a failing store does to the server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lockd.auth.watch_stream import WatchSettings
from lockd.v1 import watch_service_pb2 as watch_pb
from tests.api.conftest import Running, Servers
from tests.api.helpers import (
    WatchClient,
    cluster_status,
    create_lock,
    lock_pb_of,
    start_following,
)
from tests.support import WAIT, eventually

SERVICES = ("lockd.v1.LockService", "lockd.v1.ClusterService", "lockd.v1.WatchService")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _health(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT)
    return int(response.status)


async def test_health_is_serving_for_the_server_and_each_service_after_start(
    server: Running,
) -> None:
    """Once started (the store loaded), "" and every lockd service report SERVING."""
    channel = server.channel()
    for service in ("", *SERVICES):
        assert await _health(channel, service) == SERVING, service


async def test_health_turns_not_serving_as_soon_as_stop_begins(servers: Servers) -> None:
    """A health Watch sees NOT_SERVING when stop begins; an open WatchLocks stream gets
    Reset(SHUTDOWN) and ends; the port stops answering."""
    server = await servers.start()
    channel = server.channel()
    updates = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
    async with asyncio.timeout(WAIT):
        assert (await updates.read()).status == SERVING
    client = await WatchClient.open(channel)
    await start_following(client)

    stopping = asyncio.create_task(server.stop())
    async with asyncio.timeout(WAIT):
        assert (await updates.read()).status == NOT_SERVING
    reset = (await client.read_kind("reset")).reset
    assert reset.reason == watch_pb.RESET_REASON_SHUTDOWN
    assert reset.retry_after.ToTimedelta() > timedelta(0)
    await client.expect_end()
    async with asyncio.timeout(WAIT):
        await stopping
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _health(server.channel())
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    updates.cancel()


async def test_reflection_lists_every_service(server: Running) -> None:
    """Server reflection names the lockd services, health and reflection itself, and
    serves the descriptor of each lockd service."""
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel())
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        *(
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
            for service in SERVICES
        ),
    ]
    responses = [response async for response in stub.ServerReflectionInfo(iter(requests))]
    names = {service.name for service in responses[0].list_services_response.service}
    assert names >= {*SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    for response in responses[1:]:
        assert response.WhichOneof("message_response") == "file_descriptor_response"
        assert response.file_descriptor_response.file_descriptor_proto


async def test_a_failing_store_shows_in_heartbeats_health_and_writes_then_recovers(
    servers: Servers,
) -> None:
    """While the store fails: heartbeats say store_healthy=false, health is NOT_SERVING and
    writes fail UNAVAILABLE (nothing committed). When it works again the server recovers
    by itself: SERVING, writes succeed, the stream continues without a gap."""
    server = await servers.start(
        controlled=True, watch=WatchSettings(heartbeat_interval=timedelta(milliseconds=100))
    )
    store = server.store
    channel = server.channel()
    before = await create_lock(channel, lock_pb_of("before"))
    client = await WatchClient.open(channel)
    follower = await start_following(client)

    store.failing = True  # type: ignore[attr-defined]

    async def unhealthy_beat() -> bool:
        beat = (await client.read_kind("heartbeat")).heartbeat
        return bool(not beat.store_healthy and beat.revision == before)

    await eventually(unhealthy_beat, what="a heartbeat with store_healthy=false")

    async def not_serving() -> bool:
        return bool(await _health(channel) == NOT_SERVING)

    await eventually(not_serving, what="health NOT_SERVING")
    assert all([await _health(channel, service) == NOT_SERVING for service in SERVICES])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await create_lock(channel, lock_pb_of("during"))
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "store unavailable" in (raised.value.details() or "")
    status = await cluster_status(channel)
    assert (status.store_healthy, status.revision) == (False, before)

    store.failing = False  # type: ignore[attr-defined]

    async def serving() -> bool:
        return bool(await _health(channel) == SERVING)

    await eventually(serving, what="health SERVING again")
    after = await create_lock(channel, lock_pb_of("after"))
    assert after == before + 1
    events = await follower.until(after)
    assert [e.name for e in events] == ["after"]

    async def healthy_beat() -> bool:
        beat = (await client.read_kind("heartbeat")).heartbeat
        return bool(beat.store_healthy and beat.revision == after)

    await eventually(healthy_beat, what="a heartbeat with store_healthy=true")
    client.cancel()

"""Undecodable requests (issue 15, item 9), as the review sent them: raw bytes over a
real gRPC channel with identity serializers, to the mTLS port, the unauthenticated join
port and the admin socket. Each gets INVALID_ARGUMENT, the log one line however many
arrive, and `lockd_grpc_undecodable_requests_total` counts them all."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
import structlog

from lockd.v1 import watch_service_pb2 as watch_pb
from tests.security.helpers import SecureCluster
from tests.support import WAIT

# A varint field 1 whose value runs past 64 bits: no protobuf message decodes it.
GARBAGE = bytes.fromhex("08ffffffffffffffffffffff")
CALLS = 12


async def _send_garbage(channel: grpc.aio.Channel, method: str) -> grpc.aio.AioRpcError:
    # No serializers: the bytes go out as they are.
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(GARBAGE)
    return raised.value


async def _read_to_the_end(call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
    while await call.read() is not grpc.aio.EOF:
        pass


def _counted(cluster: SecureCluster, service: str) -> float:
    value = cluster.registry.get_sample_value(
        "lockd_grpc_undecodable_requests_total", {"grpc_service": service}
    )
    return value or 0.0


@pytest.mark.parametrize("port", ["mtls", "join", "admin"])
async def test_undecodable_requests_get_invalid_argument_one_log_line_and_a_count(
    cluster: SecureCluster, port: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The review's bytes to GetLock (JoinAgent on the join port): INVALID_ARGUMENT every
    time, no traceback from grpc, one rate-limited warning, every call counted."""
    if port == "mtls":
        alice = await cluster.user("alice", ("locksmith",))
        channel = cluster.channel(alice.credentials())
        service, method = "lockd.v1.LockService", "/lockd.v1.LockService/GetLock"
    elif port == "join":
        anonymous = grpc.ssl_channel_credentials(root_certificates=cluster.ca.cert_pem)
        channel = cluster.channel(anonymous, cluster.join_address)
        service, method = "lockd.v1.IdentityService", "/lockd.v1.IdentityService/JoinAgent"
    else:
        channel = grpc.aio.insecure_channel(f"unix:{cluster.admin_socket}")
        service, method = "lockd.v1.LockService", "/lockd.v1.LockService/GetLock"
    before = _counted(cluster, service)
    caplog.set_level(logging.INFO)
    try:
        with structlog.testing.capture_logs() as logs:
            for _ in range(CALLS):
                error = await _send_garbage(channel, method)
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
                assert (error.details() or "").startswith(f"the request is not a valid {service}")
    finally:
        if port == "admin":
            await channel.close()
    refusals = [line for line in logs if line["event"] == "undecodable request refused"]
    assert len(refusals) == 1
    assert refusals[0]["grpc_service"] == service
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert _counted(cluster, service) == before + CALLS


@pytest.mark.parametrize("after_hello", [False, True])
async def test_a_watch_stream_that_sends_undecodable_bytes_is_ended_with_invalid_argument(
    cluster: SecureCluster, after_hello: bool
) -> None:
    """Garbage as the first WatchLocks message, or as an ack after Hello (read by the
    stream's ack reader), ends the stream with INVALID_ARGUMENT."""
    node = await cluster.agent("node-1")
    channel = cluster.channel(node.credentials())
    call: grpc.aio.StreamStreamCall[bytes, bytes] = channel.stream_stream(
        "/lockd.v1.WatchService/WatchLocks"
    )()
    if after_hello:
        hello = watch_pb.WatchLocksRequest(hello=watch_pb.WatchHello(agent_id="node-1"))
        await call.write(hello.SerializeToString())
        assert await call.read()  # the snapshot has begun: the stream is admitted
    await call.write(GARBAGE)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await asyncio.wait_for(_read_to_the_end(call), WAIT)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _counted(cluster, "lockd.v1.WatchService") == 1

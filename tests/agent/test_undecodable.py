"""Undecodable requests on the agent's Unix socket (issue 15, item 9): raw bytes over a
real gRPC channel with identity serializers get INVALID_ARGUMENT, never UNKNOWN with a
traceback."""

from __future__ import annotations

import logging

import grpc
import pytest

from tests.agent.helpers import Cluster

GARBAGE = bytes.fromhex("08ffffffffffffffffffffff")


async def test_undecodable_requests_on_the_agent_socket_get_invalid_argument(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Undecodable CheckAccess and GetStatus calls: INVALID_ARGUMENT, no error logged."""
    await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    caplog.set_level(logging.INFO)
    async with grpc.aio.insecure_channel(f"unix:{agent.socket}") as channel:
        for method in ("CheckAccess", "GetStatus"):
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                f"/lockd.v1.AgentService/{method}"
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(GARBAGE)
            assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]

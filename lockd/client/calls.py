"""Shared plumbing of the clients: calling an RPC, naming a channel target."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from lockd.domain.addresses import parse_host_port
from lockd.domain.errors import UnavailableError, ValidationError
from lockd.lifetime import StopOnExit
from lockd.wire.status_table import error_for

T = TypeVar("T")


class ServerUnreachableError(UnavailableError):
    """Nothing answered at the address (no socket, connection refused, timed out).

    Raised by `AuthClient.ping`, so a caller can tell "no server there" apart from a
    server that answered UNAVAILABLE (e.g. its store is down).
    """


async def call(rpc: Awaitable[T]) -> T:
    """Await a gRPC call, raising the domain error for a failed status."""
    try:
        return await rpc
    except grpc.aio.AioRpcError as error:
        raise error_for(error.code(), error.details() or "") from None


def transport_reason(error: grpc.aio.AioRpcError) -> str:
    """The useful tail of gRPC's connect failure text.

    `failed to connect to all addresses; last error: UNKNOWN: unix:/x.sock: connect:
    Connection refused (111)` becomes `connect: Connection refused (111)`.
    """
    details = error.details() or ""
    if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer in time"
    marker = "connect: "
    if marker in details:
        return marker + details.rsplit(marker, 1)[1]
    return details or "unavailable"


# gRPC target schemes passed through as they are (grpc's naming doc).
_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:")


def channel_target(address: str) -> str:
    """The gRPC target for `address`: a scheme (`unix:/path`, `dns:///host:port`) as is,
    `host:port` as TCP, and anything else — `agent.sock`, `agentA/agent.sock`,
    `/var/lib/lockd/agent.sock` — as a Unix socket file (gRPC would otherwise look a
    relative path up in DNS). `unix:` takes relative paths against the working directory."""
    if address.startswith(_SCHEMES) or ("/" not in address and _is_host_port(address)):
        return address
    return f"unix:{address}"


def _is_host_port(address: str) -> bool:
    try:
        parse_host_port(address)
    except ValidationError:
        return False
    return True


class DeadlineInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Gives every unary call without a deadline of its own one of `timeout` seconds, so
    a server that accepted the connection but never answers (a frozen store) cannot
    hold the caller forever."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        details = client_call_details
        if details.timeout is None:
            details = grpc.aio.ClientCallDetails(
                details.method,
                self.timeout,
                details.metadata,
                details.credentials,
                details.wait_for_ready,
            )
        return await continuation(details, request)


class ChannelClient(StopOnExit):
    """A client that owns one gRPC channel: `async with` closes it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    async def stop(self) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

"""Calls that reach a watch worker but are not WatchLocks go on to the auth server.

Workers share the auth port with the auth server (SO_REUSEPORT), and the kernel spreads
*connections*, not calls, over the processes: a `lockctl` or an agent's other calls may
land on a worker. The worker serves WatchLocks itself and forwards every other call, as
bytes, over the auth server's private forwarding socket (a Unix socket in a 0700
directory that only this server's processes know). The worker has checked the TLS
client certificate at the handshake; it passes the certificate and the peer address on
in metadata, and the auth server resolves the caller from them exactly as it would from
its own TLS connection. Metadata of those names coming from a client is dropped first,
so nobody can claim a certificate they did not present.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator
from typing import Any

import grpc

from lockd.api.handler import CallerResolver, Context
from lockd.api.server_tls import NO_CERTIFICATE, caller_from_certificate
from lockd.domain.errors import UnauthenticatedError
from lockd.domain.ports import Clock
from lockd.domain.rbac import Caller

FORWARDED_CERT = "lockd-forwarded-cert-bin"
FORWARDED_PEER = "lockd-forwarded-peer"
_FORWARDED = (FORWARDED_CERT, FORWARDED_PEER)
# Headers grpc sets itself on the outgoing call.
_NOT_FORWARDED = (*_FORWARDED, "user-agent", "grpc-accept-encoding", "grpc-encoding")


class CallForwarder(grpc.GenericRpcHandler):
    """Serves every method by forwarding it over `channel` (bytes in, bytes out).

    Put it after the worker's own handlers: grpc asks handlers in order.
    """

    def __init__(self, channel: grpc.aio.Channel, tls: bool) -> None:
        self._channel = channel
        self._tls = tls

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        # Any cardinality is bytes on the wire: a stream-stream handler serves them all.
        return grpc.stream_stream_rpc_method_handler(functools.partial(self._forward, method))

    async def _forward(
        self, method: str, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        metadata = [
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if key not in _NOT_FORWARDED and not key.startswith(":")
        ]
        metadata.append((FORWARDED_PEER, context.peer()))
        if self._tls:
            pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
            if pem is not None:
                metadata.append((FORWARDED_CERT, pem))
        forward: Any = self._channel.stream_stream(method)  # bytes in, bytes out
        call = forward(requests, metadata=metadata, timeout=context.time_remaining())
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:
            trailing = tuple(error.trailing_metadata() or ())
            await context.abort(error.code(), error.details() or "", trailing)


def forwarded_caller(clock: Clock, tls: bool) -> CallerResolver:
    """The caller of a forwarded call: the certificate the worker saw (mTLS), or the
    admin (a plaintext development server, where every TCP caller is), with the source
    the worker saw."""

    def caller_of(context: Context) -> Caller:
        metadata = dict(context.invocation_metadata() or ())
        source = _text(metadata.get(FORWARDED_PEER, ""))
        if not tls:
            return dataclasses.replace(Caller.admin(), source=source)
        pem = metadata.get(FORWARDED_CERT)
        if not isinstance(pem, bytes):
            raise UnauthenticatedError(NO_CERTIFICATE)
        return dataclasses.replace(caller_from_certificate(pem, clock.now()), source=source)

    return caller_of


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""Undecodable requests: INVALID_ARGUMENT, one rate-limited log line, a counter.

grpc-python decodes a request with the handler's deserializer before lockd's code runs;
when that raises (bytes that are not the method's message), grpc logs a full traceback
and answers UNKNOWN — for every such call, from any peer, the unauthenticated join port
included. `DecodeGuard` wraps every handler's deserializer so that it never raises: it
hands the handler a marker instead, and the wrapped handler ends the call with
INVALID_ARGUMENT before any servicer runs. Each refusal increments
`lockd_grpc_undecodable_requests_total{grpc_service}`; the log gets at most one line per
`LOG_INTERVAL` seconds, counting the refusals it did not log, so no peer can flood it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from lockd.api.handler import Context
from lockd.obs.metrics import GrpcServerMetrics

_log = structlog.get_logger("lockd.api")

LOG_INTERVAL = 10.0
Behavior = Callable[..., Any]


class _Undecodable:
    """What the guarded deserializer returns for bytes it could not decode."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class RateLimitedLog:
    """A warning at most once per `interval` seconds, with how many were held back."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: float | None = None
        self._held_back = 0

    def warn(self, event: str, **fields: object) -> None:
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval:
            self._held_back += 1
            return
        _log.warning(event, suppressed=self._held_back, **fields)
        self._last, self._held_back = now, 0


class DecodeGuard(grpc.aio.ServerInterceptor):
    """Turns undecodable request messages into INVALID_ARGUMENT (see the module doc)."""

    def __init__(self, metrics: GrpcServerMetrics | None = None) -> None:
        self._metrics = metrics
        self._log = RateLimitedLog()
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        name = handler_call_details.method
        cached = self._wrapped.get(name)
        if cached is not None and cached[0] is handler:
            wrapped: grpc.RpcMethodHandler[Any, Any] = cached[1]
            return wrapped
        wrapped = self._guard(handler, name)
        self._wrapped[name] = (handler, wrapped)
        return wrapped

    def _guard(
        self, handler: grpc.RpcMethodHandler[Any, Any], name: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service = name.strip("/").rpartition("/")[0]
        assert handler.request_deserializer is not None  # intercept_service checked
        decode = _never_raising(handler.request_deserializer)
        serialize = handler.response_serializer
        refuse = self._refuser(service)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _unary_request(handler.unary_unary, refuse), decode, serialize
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _unary_request(handler.unary_stream, refuse), decode, serialize
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _stream_request(handler.stream_unary, refuse), decode, serialize
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _stream_request(handler.stream_stream, refuse), decode, serialize
            )
        return handler

    def _refuser(self, service: str) -> Callable[[_Undecodable, Context], Awaitable[None]]:
        counter = (
            None
            if self._metrics is None
            else self._metrics.undecodable_requests_total.labels(grpc_service=service)
        )

        async def refuse(marker: _Undecodable, context: Context) -> None:
            if counter is not None:
                counter.inc()
            self._log.warn(
                "undecodable request refused",
                grpc_service=service,
                peer=context.peer(),
                reason=marker.reason,
            )
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request is not a valid {service} message: {marker.reason}",
            )

        return refuse


def _never_raising(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def guarded(data: bytes) -> Any:
        try:
            return decode(data)
        except Exception as error:  # any decoder failure is the peer's bad input
            return _Undecodable(str(error) or type(error).__name__)

    return guarded


Refuse = Callable[[_Undecodable, Context], Awaitable[None]]


def _unary_request(behavior: Behavior, refuse: Refuse) -> Behavior:
    if inspect.isasyncgenfunction(behavior):

        async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
            if isinstance(request, _Undecodable):
                await refuse(request, context)
            async for response in behavior(request, context):
                yield response

        return generator

    async def coroutine(request: Any, context: Context) -> Any:
        if isinstance(request, _Undecodable):
            await refuse(request, context)
        return await behavior(request, context)

    return coroutine


def _stream_request(behavior: Behavior, refuse: Refuse) -> Behavior:
    """Request streams are checked message by message. The handler may read them from
    another task (the watch handler reads acks in one): the refusal then also cancels
    the handler's own task, so the call ends with the refusal's status."""

    def checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        handler_task = asyncio.current_task()

        async def messages() -> AsyncIterator[Any]:
            async for message in requests:
                if isinstance(message, _Undecodable):
                    if asyncio.current_task() is not handler_task and handler_task is not None:
                        handler_task.cancel()
                    await refuse(message, context)
                yield message

        return messages()

    if inspect.isasyncgenfunction(behavior):

        async def generator(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
            async for response in behavior(checked(requests, context), context):
                yield response

        return generator

    async def coroutine(requests: AsyncIterator[Any], context: Context) -> Any:
        return await behavior(checked(requests, context), context)

    return coroutine

"""A server interceptor for every lockd gRPC server: grpc_server_* metrics and log context.

Each RPC is counted when it starts and when it ends (with its status code), timed, and
runs with `rpc` and `peer` bound in structlog's contextvars so every log line it writes
says which call it belongs to.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from lockd.api.decode_guard import DecodeGuard
from lockd.api.handler import Context
from lockd.obs.metrics import GrpcServerMetrics

Behavior = Callable[..., Any]


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: GrpcServerMetrics) -> None:
        self._metrics = metrics
        # Wrapped handlers by method, built on the method's first call: wrapping and
        # resolving metric labels on every call would cost more than a CheckAccess.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        name = handler_call_details.method
        cached = self._wrapped.get(name)
        if cached is not None and cached[0] is handler:
            wrapped: grpc.RpcMethodHandler[Any, Any] | None = cached[1]
            return wrapped
        wrapped = self._wrap_handler(handler, name)
        self._wrapped[name] = (handler, wrapped)
        return wrapped

    def _wrap_handler(
        self, handler: grpc.RpcMethodHandler[Any, Any], name: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service, _, method = name.strip("/").rpartition("/")
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, service, method, "unary"),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap(handler.unary_stream, service, method, "server_stream"),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap(handler.stream_stream, service, method, "bidi_stream"),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return handler

    def _wrap(self, behavior: Behavior, service: str, method: str, kind: str) -> Behavior:
        metrics = self._metrics
        labels = {"grpc_service": service, "grpc_method": method, "grpc_type": kind}
        rpc = f"{service}/{method}"
        started_total = metrics.started_total.labels(**labels)
        handling_seconds = metrics.handling_seconds.labels(**labels)
        handled: dict[str, Any] = {}

        def begin(context: Context) -> float:
            started_total.inc()
            structlog.contextvars.bind_contextvars(rpc=rpc, peer=context.peer())
            return time.perf_counter()

        def end(context: Context, started: float, error: BaseException | None) -> None:
            code = _status(context, error)
            counter = handled.get(code)
            if counter is None:
                counter = handled[code] = metrics.handled_total.labels(**labels, grpc_code=code)
            counter.inc()
            handling_seconds.observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("rpc", "peer")

        if inspect.isasyncgenfunction(behavior):
            sent_total = metrics.msg_sent_total.labels(**labels)

            async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
                started, error = begin(context), None
                try:
                    async for response in behavior(request, context):
                        sent_total.inc()
                        yield response
                except BaseException as caught:
                    error = caught
                    raise
                finally:
                    end(context, started, error)

            return generator

        # Unary calls count their one request and response here; a stream handler that
        # is a coroutine (it writes through the context) counts nothing per message.
        received_total = metrics.msg_received_total.labels(**labels) if kind == "unary" else None
        answered_total = metrics.msg_sent_total.labels(**labels) if kind == "unary" else None

        async def coroutine(request: Any, context: Context) -> Any:
            started, error = begin(context), None
            if received_total is not None:
                received_total.inc()
            try:
                response = await behavior(request, context)
                if answered_total is not None:
                    answered_total.inc()
                return response
            except BaseException as caught:
                error = caught
                raise
            finally:
                end(context, started, error)

        return coroutine


def _status(context: Context, error: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if error is None:
        return "OK"
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    return "UNKNOWN"


def server_interceptors(metrics: GrpcServerMetrics | None) -> list[grpc.aio.ServerInterceptor]:
    """Every lockd gRPC server's interceptors: metrics and log context (when metrics are
    kept), outside the decode guard, so a refused undecodable call is counted too."""
    guard = DecodeGuard(metrics)
    return [guard] if metrics is None else [ObservabilityInterceptor(metrics), guard]

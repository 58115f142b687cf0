"""Glue shared by every servicer: who the caller is, and errors turned into statuses."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from lockd.api.errors import status_for
from lockd.domain.rbac import Caller

CallerResolver = Callable[[grpc.aio.ServicerContext[Any, Any]], Caller]

Request = TypeVar("Request")
Response = TypeVar("Response")
Self = TypeVar("Self")


def admin_caller(_context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
    """Every call on this server has full rights (the local admin socket)."""
    return Caller.admin()


def unary(
    method: Callable[[Self, Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[Response]],
) -> Callable[[Self, Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[Response]]:
    """Run a unary handler, turning domain errors into the table's status codes."""

    @functools.wraps(method)
    async def handler(
        self: Self, request: Request, context: grpc.aio.ServicerContext[Any, Any]
    ) -> Response:
        try:
            return await method(self, request, context)
        except Exception as error:
            code, message = status_for(error)
            await context.abort(code, message)
            raise  # abort() raises; this only satisfies the type checker

    return handler

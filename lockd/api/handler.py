"""Glue shared by every servicer: who the caller is, and errors turned into statuses."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from lockd.domain.rbac import Caller
from lockd.wire.status_table import status_for

# The servicer context of any lockd RPC (request and response types vary per method).
Context = grpc.aio.ServicerContext[Any, Any]
CallerResolver = Callable[[Context], Caller]

Request = TypeVar("Request")
Response = TypeVar("Response")
Self = TypeVar("Self")


def admin_caller(_context: Context) -> Caller:
    """Every call on this server has full rights (the local admin socket)."""
    return Caller.admin()


def with_source(caller_of: CallerResolver) -> CallerResolver:
    """`caller_of`, with each caller's `source` set to the RPC's peer address."""

    def resolve(context: Context) -> Caller:
        return dataclasses.replace(caller_of(context), source=context.peer())

    return resolve


def unary(
    method: Callable[[Self, Request, Context], Awaitable[Response]],
) -> Callable[[Self, Request, Context], Awaitable[Response]]:
    """Run a unary handler, turning domain errors into the table's status codes."""

    @functools.wraps(method)
    async def handler(self: Self, request: Request, context: Context) -> Response:
        try:
            return await method(self, request, context)
        except Exception as error:
            code, message = status_for(error)
            await context.abort(code, message)
            raise  # abort() raises; this only satisfies the type checker

    return handler

"""The lifetime of something that runs tasks or holds connections: `async with` ends in
`stop()`, and the few lines every owner of background tasks needs to end them.

One place for both, so that servers, clients and the proxy stop the same way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self


class StopOnExit:
    """A base for objects that are stopped by leaving their `async with` block."""

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait for each to end; their cancellation is expected, any
    other exception propagates (a task that failed is a bug to see, not to hide)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task

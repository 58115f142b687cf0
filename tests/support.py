"""Helpers every test suite shares: free ports and polling for a condition."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Callable
from typing import Any

WAIT = 20.0  # generous: the suite must pass on a loaded 2-core machine


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def eventually(
    probe: Callable[[], Any],
    *,
    within: float = WAIT,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `probe` (sync or async) until it returns something truthy, and return that;
    fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)

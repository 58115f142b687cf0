"""Helpers every test suite shares: free ports and polling for a condition."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
import urllib.error
import urllib.request
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


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()
    except OSError:
        return 0, ""

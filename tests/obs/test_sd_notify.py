"""lockd.obs.sd_notify: datagrams as systemd reads them, from a real AF_UNIX socket."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockd.obs.sd_notify import ServiceNotifier


@pytest.fixture
def notify_socket(socket_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = str(socket_dir / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        yield path, sock


def test_ready_status_and_stopping_arrive_as_one_datagram_each(
    notify_socket: tuple[str, socket.socket],
) -> None:
    """READY=1 carries its STATUS= line; STOPPING=1 likewise; newlines in values are kept
    out of the protocol's line structure."""
    path, sock = notify_socket
    notifier = ServiceNotifier({"NOTIFY_SOCKET": path})
    notifier.ready("serving")
    notifier.status("two\nlines")
    notifier.stopping()
    assert [sock.recv(4096) for _ in range(3)] == [
        b"READY=1\nSTATUS=serving",
        b"STATUS=two lines",
        b"STOPPING=1\nSTATUS=stopping",
    ]


def test_an_abstract_socket_name_is_reached() -> None:
    """`@name` in $NOTIFY_SOCKET is Linux's abstract namespace."""
    name = f"lockd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        ServiceNotifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"


def test_without_a_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    """Outside systemd the notifier is disabled and its calls are no-ops."""
    notifier = ServiceNotifier({})
    assert not notifier.enabled
    notifier.ready("serving")
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_is_logged_not_raised(socket_dir: Path) -> None:
    """systemd gone (the path no longer exists): the service keeps running."""
    ServiceNotifier({"NOTIFY_SOCKET": str(socket_dir / "gone.sock")}).ready("serving")


def test_the_watchdog_interval_comes_from_watchdog_usec_for_this_process() -> None:
    """WATCHDOG_USEC in microseconds; a WATCHDOG_PID of another process disables it."""
    assert ServiceNotifier({"WATCHDOG_USEC": "3000000"}).watchdog_interval == 3.0
    mine = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert ServiceNotifier(mine).watchdog_interval == 3.0
    other = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert ServiceNotifier(other).watchdog_interval is None
    assert ServiceNotifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None


async def test_the_watchdog_loop_pings_at_half_the_interval(
    notify_socket: tuple[str, socket.socket],
) -> None:
    """With a 0.2 s watchdog, pings keep coming (the first at once)."""
    path, sock = notify_socket
    notifier = ServiceNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    task = asyncio.create_task(notifier.watchdog_forever())
    try:
        pings = [await asyncio.to_thread(sock.recv, 64) for _ in range(3)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert pings == [b"WATCHDOG=1"] * 3

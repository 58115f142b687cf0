"""systemd's service notification protocol (sd_notify(3)) for `Type=notify` units.

The protocol is one datagram per message to the AF_UNIX socket named by $NOTIFY_SOCKET
(a path, or `@name` for the abstract namespace), text lines `KEY=value`. lockd sends
READY=1 when it serves, STATUS=<one line> as it starts and runs, STOPPING=1 when it
begins to stop, and WATCHDOG=1 every half $WATCHDOG_USEC when systemd asks for a
watchdog. These few lines are written here rather than taken from a package: the only
pure-Python one (`sdnotify`) has not been released since 2017, and `systemd-python`
needs libsystemd's headers and a compiler at install time — for one `sendto`.

Without $NOTIFY_SOCKET (not under systemd) every call does nothing. A failed send is
logged and otherwise ignored: systemd going away must not stop the service.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

import structlog

_log = structlog.get_logger("lockd.sd_notify")


class ServiceNotifier:
    """Sends notifications to the service manager named in the environment."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def stopping(self, status: str = "stopping") -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def send(self, *lines: str) -> None:
        """One datagram of `lines` (newlines inside a value would split it: replaced)."""
        if self._address is None:
            return
        message = "\n".join(line.replace("\n", " ") for line in lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Non-blocking: called from the event loop; a full queue is an OSError.
                sock.setblocking(False)
                sock.sendto(message, self._address)
        except OSError as error:
            _log.warning("could not notify the service manager", error=str(error))

    async def watchdog_forever(self) -> None:
        """WATCHDOG=1 every half interval, from the event loop: a wedged loop misses it
        and systemd restarts the service. Returns at once when no watchdog is asked for."""
        if self.watchdog_interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(self.watchdog_interval / 2)


def _socket_address(value: str) -> str | None:
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # Linux abstract namespace
    if value:
        _log.warning("ignoring an unsupported NOTIFY_SOCKET", notify_socket=value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between watchdog deadlines, when systemd asks this process for pings."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (sd_watchdog_enabled(3))
    return int(usec) / 1_000_000

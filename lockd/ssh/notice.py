"""The line a user sees when lockd refuses or ends their SSH connection, and making sure
it has left before the connection goes.

`ERROR: <the SPEC §3 text>` goes to the session's stderr: the client's stderr, or its
terminal when the session has a PTY (then with `\\r\\n`, the terminal being raw on the
client). Written before the connection ends, it must also have been *read* by sshd:
`TIOCOUTQ` (terminals) or `FIONREAD` (pipes) says how much is still waiting, and sshd
then gets `GRACE` to put it on the wire. Data sshd has written to the TCP socket is
delivered when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sys
import termios
import time

TIMEOUT = 0.5  # seconds the notice may take to leave
GRACE = 0.01  # then this long for sshd to put it on the wire
POLL = 0.001


def line(text: str, terminal: bool) -> bytes:
    if terminal:
        return f"\r\nERROR: {text}\r\n".encode()
    return f"ERROR: {text}\n".encode()


def say(text: str, fd: int = 2) -> None:
    """Write the notice to `fd` (the hook's stderr by default); a client that is gone
    already does not matter."""
    with contextlib.suppress(OSError):
        os.write(fd, line(text, os.isatty(fd)))


def unsent(fd: int) -> int:
    """Bytes written to `fd` that its reader (sshd) has not taken yet."""
    for request in (termios.TIOCOUTQ, termios.FIONREAD):  # terminals and sockets; pipes
        try:
            buffer = fcntl.ioctl(fd, request, b"\0\0\0\0")
        except OSError:
            continue
        return int.from_bytes(buffer, sys.byteorder)
    return 0


def drain(fd: int) -> None:
    """Wait (blocking: the hook has nothing else to do) until `fd`'s reader took it all."""
    deadline = time.monotonic() + TIMEOUT
    while unsent(fd) and time.monotonic() < deadline:
        time.sleep(POLL)
    time.sleep(GRACE)


async def drained(fds: list[int]) -> None:
    """`drain` for the guard, which ends many connections at once."""
    deadline = time.monotonic() + TIMEOUT
    # Polled: there is no event for "the reader took it", and it takes a millisecond.
    while time.monotonic() < deadline:
        if not any(unsent(fd) for fd in fds):
            break
        await asyncio.sleep(POLL)
    await asyncio.sleep(GRACE)


def open_stderr(pid: int) -> int | None:
    """The stderr of process `pid` (root may open it through /proc: a pipe or the PTY);
    None when it cannot be opened (the process is gone, or it is a socket)."""
    try:
        return os.open(f"/proc/{pid}/fd/2", os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None

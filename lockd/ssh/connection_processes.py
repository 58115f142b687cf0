"""The processes of one SSH connection, seen from root (`lockd ssh-session guard`).

sshd runs AuthorizedPrincipalsCommand / AuthorizedKeysCommand from the connection's
privileged process, the **monitor** (`sshd: alice [priv]`, a child of the listener), for
every connection, with or without a session. So the parent of the auth command that
called the guard names the connection: every process of it descends from the monitor.
After authentication the monitor forks the **server** process that carries the
connection's channels (`sshd: alice@pts/0`, running as the login). For a root login
OpenSSH skips that child and the monitor is the server itself. Each session channel
(shell, command, subsystem) is a child of the server: its **leader**, whose stderr is
the channel's stderr (a pipe) or terminal (the PTY).

Ending a connection (`freeze`, `kill`): every process below the server is stopped
(SIGSTOP, walked again until no new one turns up), and after the notice has been
written, killed (SIGKILL: neither can be caught, blocked or ignored), then the server
(SIGKILL when it runs as the login, who could have stopped it), then the monitor gets
SIGTERM: it cleans up (utmp, the PTY) and exits, and the connection's TCP socket closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from dataclasses import dataclass

from lockd.domain.addresses import join_host_port
from lockd.ssh.processes import (
    PROC,
    SSHD_NAMES,
    children,
    command_name,
    freeze_tree,
    kill_all,
    parent_of,
    stat_fields,
)

AUTH_COMMAND_MARK = b"\0ssh-session\0auth-"  # in the argv of `lockd ssh-session auth-…`
SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Monitor:
    """A connection's privileged sshd process (`start` tells a reused pid apart), and the
    uid of the login it authenticates."""

    pid: int
    start: str
    login_uid: int

    @property
    def key(self) -> str:
        return f"{self.pid}.{self.start}"


def monitor_of(auth_command: int, login_uid: int) -> Monitor | None:
    """The monitor that ran `auth_command`: a root-owned sshd process (None otherwise)."""
    monitor = parent_of(auth_command)
    if monitor <= 1 or command_name(monitor) not in SSHD_NAMES or _uid(monitor) != 0:
        return None
    start = start_time(monitor)
    return Monitor(monitor, start, login_uid) if start else None


def alive(monitor: Monitor) -> bool:
    return start_time(monitor.pid) == monitor.start


def start_time(pid: int) -> str:
    fields = stat_fields(pid)
    return fields[19] if fields else ""


def server_of(monitor: Monitor) -> int:
    """The process carrying the channels: the monitor's sshd child running as the login
    (after authentication), else the monitor itself (a root login, or not yet)."""
    if monitor.login_uid != 0:
        for child in _sshd_children(monitor):
            if _uid(child) == monitor.login_uid:
                return child
    return monitor.pid


def authenticating(monitor: Monitor) -> bool:
    """Whether the connection is still authenticating: its pre-auth child (`sshd: alice
    [net]`, running as sshd's unprivileged user) is there."""
    return any(_uid(child) not in (0, monitor.login_uid) for child in _sshd_children(monitor))


def _sshd_children(monitor: Monitor) -> list[int]:
    return [child for child in children(monitor.pid) if command_name(child) in SSHD_NAMES]


def session_leaders(monitor: Monitor) -> list[int]:
    """The first process of each session channel: the server's children that are
    neither sshd processes (the pre-auth child) nor auth commands."""
    leaders = []
    for child in children(server_of(monitor)):
        if command_name(child) in SSHD_NAMES or AUTH_COMMAND_MARK in _command_line(child):
            continue
        leaders.append(child)
    return leaders


def freeze(monitor: Monitor) -> tuple[int, set[int]]:
    """Stop every process below the server; keep the server running, so that it can
    still send the notice (the login may have stopped it). The server, and what froze."""
    server = server_of(monitor)
    frozen = freeze_tree(server)
    if server != monitor.pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server, signal.SIGCONT)
    return server, frozen


def kill(monitor: Monitor, server: int, frozen: set[int]) -> None:
    """Kill the session processes (all stopped: none can have forked since `freeze`) and
    the server, and ask the monitor to finish. Signals only, no walk of /proc: a batch of
    connections is signalled before their exits compete with the guard for the CPU."""
    kill_all(frozen)
    if server != monitor.pid:
        kill_all({server})
    if alive(monitor):
        with contextlib.suppress(ProcessLookupError):
            os.kill(monitor.pid, signal.SIGTERM)


def kill_monitor(monitor: Monitor) -> None:
    """The last resort, for a monitor that did not finish after SIGTERM."""
    if alive(monitor):
        with contextlib.suppress(ProcessLookupError):
            os.kill(monitor.pid, signal.SIGKILL)


def remote_address(monitor: Monitor) -> str:
    """The client's `ip:port`: the peer of the monitor's TCP socket, duplicated into this
    process with pidfd_getfd (sshd 9.2 passes no %C to the auth commands); "" when it
    cannot be told."""
    try:
        pidfd = os.pidfd_open(monitor.pid)
    except OSError:
        return ""
    try:
        for fd in _socket_fds(monitor.pid):
            copy = _LIBC.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
            if copy < 0:
                continue
            with socket.socket(fileno=copy) as peer:
                if peer.family in (socket.AF_INET, socket.AF_INET6):
                    with contextlib.suppress(OSError):
                        host, port = peer.getpeername()[:2]
                        return join_host_port(host.removeprefix("::ffff:"), port)
    finally:
        os.close(pidfd)
    return ""


def _socket_fds(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for fd in (PROC / str(pid) / "fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith("socket:"):
                    found.append(int(fd.name))
    return found


def _uid(pid: int) -> int:
    try:
        return (PROC / str(pid)).stat().st_uid
    except OSError:
        return -1


def _command_line(pid: int) -> bytes:
    try:
        return b"\0" + (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""

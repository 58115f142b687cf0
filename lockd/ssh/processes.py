"""The processes of one SSH session, and the sshd process that serves its connection.

Without cgroups the hook keeps the session's processes in one tree: it makes itself a
*child subreaper* (prctl PR_SET_CHILD_SUBREAPER), so a process that daemonizes (double
fork, `setsid`, `nohup … &`) is re-parented to the hook instead of init and stays its
descendant. Ending the session stops the whole tree first (SIGSTOP, so nothing can fork
away while it is being walked), then kills it, and walks again until nothing is left.

The connection is ended by ending the nearest sshd ancestor of the hook: the
per-connection sshd process (`sshd: alice@pts/0`, or the root-owned one of a root login).
It carries every channel of the connection (shells, commands, port forwards,
multiplexed sessions), so when it goes, all of them go, and the client sees the
connection close. It is never the listening sshd (`[listener]` in its command line): that
one serves every connection and is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator
from pathlib import Path

PROC = Path("/proc")
PR_SET_CHILD_SUBREAPER = 36
SSHD_NAMES = ("sshd", "sshd-session")  # OpenSSH >= 9.8 runs connections in sshd-session
LISTENER_MARK = b"[listener]"
KILL_ROUNDS = 50


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return found  # the process is gone
    for task in tasks:
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every descendant of `pid`, parents before their children."""
    found: list[int] = []
    pending = children(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children(child))
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            continue  # gone meanwhile; or a setuid program the login cannot signal


def freeze_tree(pid: int) -> set[int]:
    """Stop every descendant of `pid`, walking again until no new one turns up (one
    forked meanwhile); the processes stopped. Stopped processes cannot fork."""
    seen: set[int] = set()
    for _ in range(KILL_ROUNDS):
        new = [child for child in descendants(pid) if child not in seen]
        if not new:
            break
        _signal_all(new, signal.SIGSTOP)
        seen.update(new)
    return seen


def kill_tree(pid: int, frozen: set[int]) -> None:
    """SIGKILL the `frozen` descendants of `pid`, and any that still turns up.

    No waiting for them to die: SIGKILL cannot be caught or blocked. Exited children of
    the caller are its to reap (`reap_orphans`).
    """
    kill_all(frozen)
    kill_stragglers(pid, frozen)


def kill_all(pids: set[int]) -> None:
    _signal_all(list(pids), signal.SIGKILL)


def kill_stragglers(pid: int, killed_already: set[int]) -> None:
    """SIGKILL any descendant of `pid` not among those killed already, until none is left."""
    killed = set(killed_already)
    for _ in range(KILL_ROUNDS):
        new = [child for child in descendants(pid) if child not in killed]
        if not new:
            break
        _signal_all(new, signal.SIGKILL)
        killed.update(new)


def reap_orphans() -> None:
    """Collect exited children (orphans re-parented to us among them) without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    return text[text.rindex(")") + 2 :].split()


def parent_of(pid: int) -> int:
    fields = stat_fields(pid)
    return int(fields[1]) if fields else 0


def _ancestors(pid: int) -> Iterator[int]:
    current = parent_of(pid)
    while current > 1:
        yield current
        current = parent_of(current)


def command_name(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def connection_process(pid: int | None = None) -> int | None:
    """The per-connection sshd process serving `pid` (default: this process), if any."""
    for ancestor in _ancestors(os.getpid() if pid is None else pid):
        if command_name(ancestor) in SSHD_NAMES:
            try:
                command_line = (PROC / str(ancestor) / "cmdline").read_bytes()
            except OSError:
                return None
            return None if LISTENER_MARK in command_line else ancestor
    return None


def end_connection(sshd_pid: int) -> None:
    """SIGTERM the connection's sshd process: it closes the connection and exits."""
    try:
        os.kill(sshd_pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the connection is already gone


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Run the block at real-time priority (SCHED_FIFO), for a burst of signals to many
    processes. Each SIGSTOP or SIGKILL wakes its target, and at a normal priority the
    woken process may take the CPU before the next signal is sent: ending 50 connections
    took 100-270 ms of kill() calls on a loaded 2-core machine. Without the right to
    (not root), the block runs at the normal priority."""
    policy, parameters = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except PermissionError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, parameters)

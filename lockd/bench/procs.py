"""Child processes of a benchmark run: started, measured, and always killed.

Every child runs in its own session (a Ctrl-C on the terminal reaches the coordinator
only, which then ends the children in order) and asks the kernel for SIGKILL when the
coordinator dies (PR_SET_PDEATHSIG, set first thing by `lockd.bench.worker` and
`lockd.bench.launch`), so even a `kill -9` of `lockd bench` leaves nothing behind.
`Reaper.kill_all` also runs at interpreter exit. Resource figures come from /proc
(Linux): VmRSS from /proc/<pid>/status, user + system CPU from /proc/<pid>/stat.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            text = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # Fields after the command name (which may contain spaces) start at field 3, state.
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def interrupted() -> bool:
    """True while the current task unwinds from a cancellation (Ctrl-C, SIGTERM): time
    to kill children at once instead of stopping them gracefully."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_nofile() -> int:
    """Raise the open-file limit to its hard maximum (10k streams need 10k sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def die_with_parent() -> None:
    """In a child: have the kernel SIGKILL this process when its parent (the
    coordinator) dies; exit at once if it is already gone."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)


class Reaper:
    """Tracks every child and the temporary directory; `close()` removes them all."""

    def __init__(self, keep: bool = False) -> None:
        self._pids: set[int] = set()
        self.workdir = Path(tempfile.mkdtemp(prefix="lockd-bench-"))
        self._keep = keep
        atexit.register(self.close)

    def popen(
        self, args: Sequence[str], *, stdout: IO[Any] | int | None, stderr: IO[Any] | int | None
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self._pids.add(process.pid)
        return process

    async def spawn(self, args: Sequence[str], stderr: IO[Any]) -> asyncio.subprocess.Process:
        """A child whose stdin and stdout are pipes to the coordinator (the wire)."""
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            limit=1 << 24,
        )
        self._pids.add(process.pid)
        return process

    def forget(self, pid: int) -> None:
        self._pids.discard(pid)

    def kill_all(self) -> None:
        """SIGKILL every child still tracked (and its process group)."""
        for pid in list(self._pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._pids.clear()

    def close(self) -> None:
        self.kill_all()
        if not self._keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

"""One process per data dir: an exclusive `flock` on a lock file that names its holder.

An auth server is the only writer of its embedded store, and an agent with one server_id
must run once (DESIGN §5, SPEC §11). Before either opens anything it takes
`<data_dir>/<role>.lock` with `fcntl.flock(LOCK_EX | LOCK_NB)` and writes its pid into
it. The kernel drops the lock when the process dies, however it dies, so a stale file
never blocks a restart; the pid in it is only there to name the holder in the error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from lockd.domain.errors import UnavailableError


class ProcessLock:
    """The held lock on `<directory>/<role>.lock`; `release()` (or leaving it) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path, role: str, what: str) -> ProcessLock:
        """Take the lock or raise UnavailableError naming the holder's pid.

        `what` names the process for the message ("lockd auth server", "lockd agent").
        """
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = directory / f"{role}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise UnavailableError(f"cannot open the lock file {path}: {error}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise UnavailableError(
                f"another {what} ({who}) is already running on {directory} "
                f"(it holds {path}); stop it first, or give this one its own data_dir"
            ) from None
        except OSError as error:
            os.close(fd)
            raise UnavailableError(f"cannot lock {path}: {error}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Empty the file first: a pid left behind would name a process that is gone.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

"""Unix socket files a process may remove: only the ones it created itself.

A second instance that fails to start must never take a live server's socket with it
(issue 11). So before binding, a socket file that exists is probed: if something accepts
a connection on it, the start is refused; if nothing does, it is a leftover of a process
that died and is replaced. After binding, the file's (device, inode) is remembered, and
at stop the file is unlinked only if the path still names that same file.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

from lockd.domain.errors import UnavailableError

PROBE_TIMEOUT = 1.0


class OwnedSocket:
    """A Unix socket path this process is about to bind, and then owns."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self._what = what
        self._identity: tuple[int, int] | None = None

    def prepare(self) -> None:
        """Make the path free to bind: refuse a live socket, remove a stale one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise UnavailableError(
                f"{self.path} exists and is not a socket; refusing to replace it "
                f"with the {self._what}"
            )
        if answers(self.path):
            raise UnavailableError(
                f"{self.path} is in use: another process is serving on it (is another "
                f"{self._what} running?); stop it first or configure another path"
            )
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # nothing listens: a leftover of a process that died

    def claim(self) -> None:
        """Remember the file just bound (call right after the server started)."""
        info = self.path.lstat()
        self._identity = (info.st_dev, info.st_ino)

    def remove(self) -> None:
        """Unlink the file if it is still the one this process created."""
        identity, self._identity = self._identity, None
        if identity is None:
            return
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return
        if (info.st_dev, info.st_ino) == identity:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket at `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True

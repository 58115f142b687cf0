"""Writing a small file so that a crash leaves either the old content or the new, whole.

One helper for every file lockd writes that must survive a crash intact: the agent's
persisted view, the agent's `server_id`, identity files from `lockctl auth sign`, the
cluster CA's key. The data goes to a temporary file beside the target, is fsynced, and
then takes the target's name (a rename, or a link when an existing file must win); the
directory is fsynced so the new name is durable too.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_durably(path: Path, data: bytes, *, mode: int = 0o600, replace: bool = True) -> bool:
    """Write `data` to `path` atomically with permissions `mode`.

    With `replace=False` an existing `path` is left alone and False is returned (two
    concurrent writers agree on the first one's content). Raises OSError on failure,
    leaving no temporary file behind.
    """
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)  # atomic, and refuses to replace a winner's file
            except FileExistsError:
                return False
        fsync_directory(path.parent)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    """Make the names in `directory` (a rename or link just made) durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

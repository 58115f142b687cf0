"""A real `lockd` daemon in a subprocess for the deploy tests: started from a config
file, polled for a condition, stopped with SIGTERM (SIGKILL if it hangs) at the end."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

LOCKD = Path(sys.executable).with_name("lockd")
START_TIMEOUT = 60.0  # a cold start imports grpc and makes a CA: slow on a loaded box


class LockdProcess:
    """One running daemon; `log()` is everything it printed so far."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Poll `condition` until true; fail with the log if the daemon exits or it
        takes longer than START_TIMEOUT."""
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(f"lockd exited while waiting for {what}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.log()}")
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM and wait; the exit code (SIGKILL after 30 s, then -9)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@contextmanager
def running_lockd(
    args: list[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[LockdProcess]:
    """`lockd *args` running for the block; stopped (never left behind) afterwards."""
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            [str(LOCKD), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            preexec_fn=preexec_fn,
        )
    daemon = LockdProcess(process, log_path)
    try:
        yield daemon
    finally:
        daemon.stop()

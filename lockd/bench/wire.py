"""The pipe between the coordinator and a worker process: JSON lines both ways.

The coordinator writes commands to the worker's stdin, `{"cmd": NAME, "id": N, ...}`;
the worker answers each with `{"ev": "reply", "id": N, ...}` and may also send events
of its own at any time, `{"ev": KIND, ...}` (e.g. `applied`, with a revision and the
monotonic times at which its first and last agent applied it). Worker logs go to
stderr, which the coordinator keeps in a file and quotes when a worker fails.

Cross-process timing uses `time.monotonic()`, which on Linux is CLOCK_MONOTONIC: one
clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from lockd.bench.procs import Reaper

Message = dict[str, Any]


class WorkerFailed(RuntimeError):
    """A worker died, or did not answer in time."""


# -- the worker's side -------------------------------------------------------------------


class ChildWire:
    """stdin commands in, stdout events out (inside a worker process)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> ChildWire:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 24)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return cls(reader)

    @staticmethod
    def emit(ev: str, **fields: Any) -> None:
        sys.stdout.write(json.dumps({"ev": ev, **fields}) + "\n")
        sys.stdout.flush()

    async def commands(self) -> AsyncIterator[Message]:
        """Commands until the coordinator closes the pipe (or goes away)."""
        while line := await self._reader.readline():
            message: Message = json.loads(line)
            yield message


# -- the coordinator's side --------------------------------------------------------------


class Worker:
    """One worker process as the coordinator sees it."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.name = name
        self.process = process
        self.stderr_path = stderr
        self._next_id = 0
        self._replies: dict[int, asyncio.Future[Message]] = {}
        self._events: defaultdict[str, asyncio.Queue[Message]] = defaultdict(asyncio.Queue)
        self._reader = asyncio.create_task(self._read())
        self._dead: str | None = None

    @classmethod
    async def start(cls, reaper: Reaper, name: str, role: str, args: Sequence[str]) -> Worker:
        stderr_path = reaper.workdir / f"{name}.stderr"
        command = [sys.executable, "-m", "lockd.bench.worker", role, *args]
        with stderr_path.open("wb") as stderr:
            process = await reaper.spawn(command, stderr)
        return cls(name, process, stderr_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _failure(self, what: str) -> WorkerFailed:
        tail = self.stderr_tail()
        detail = f"; its stderr ends with:\n{tail}" if tail else ""
        return WorkerFailed(f"worker {self.name} {what}{detail}")

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            message: Message = json.loads(line)
            if message.get("ev") == "reply":
                future = self._replies.pop(int(message["id"]), None)
                if future is not None and not future.done():
                    future.set_result(message)
            else:
                self._events[str(message.get("ev"))].put_nowait(message)
        code = await self.process.wait()
        self._dead = f"exited with status {code}"
        for future in self._replies.values():
            if not future.done():
                future.set_exception(self._failure(self._dead))
        self._replies.clear()
        for queue in self._events.values():
            queue.put_nowait({"ev": "dead"})

    async def call(self, cmd: str, within: float = 60.0, **fields: Any) -> Message:
        """Send a command and wait for its reply."""
        if self._dead is not None:
            raise self._failure(self._dead)
        self._next_id += 1
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        self.send({"cmd": cmd, "id": self._next_id, **fields})
        try:
            async with asyncio.timeout(within):
                reply = await future
        except TimeoutError:
            raise self._failure(f"did not answer {cmd!r} within {within:g}s") from None
        if "error" in reply:
            raise self._failure(f"failed {cmd!r}: {reply['error']}")
        return reply

    def send(self, message: Message) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write((json.dumps(message) + "\n").encode())

    async def event(self, kind: str, within: float = 60.0) -> Message:
        """The next event of this kind the worker sent."""
        queue = self._events[kind]
        try:
            async with asyncio.timeout(within):
                message = await queue.get()
        except TimeoutError:
            raise self._failure(f"sent no {kind!r} event within {within:g}s") from None
        if message.get("ev") == "dead":
            queue.put_nowait(message)
            raise self._failure(self._dead or "died")
        return message

    async def close(self, reaper: Reaper, grace: float = 5.0) -> None:
        """Close its stdin (the worker's signal to stop), then kill it if it lingers
        `grace` seconds (at once when 0)."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            async with asyncio.timeout(grace):
                await self.process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        reaper.forget(self.pid)


async def gather_events(workers: Sequence[Worker], kind: str, within: float) -> list[Message]:
    """The next event of `kind` from every worker."""
    return list(await asyncio.gather(*(worker.event(kind, within) for worker in workers)))

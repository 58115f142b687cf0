"""Locking modes on real SSH sessions: when the node's view cannot be trusted, strict
sessions end (and new ones are refused) with the lock-out message, best_effort ones go
on. Each test has a cluster of its own, because it stops a part of it."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockd.client import AuthClient
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode
from lockd.domain.resources import Role
from lockd.pki_openssh import SSHUserIdentity
from tests.ssh.helpers import Node, marker, sleeping, start_cluster, start_node
from tests.support import eventually

STRICT = SSHUserIdentity("carol", ("secops",))
BEST_EFFORT = SSHUserIdentity("dave", ("dev",))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """A node whose view goes stale 1 s after its last proof (heartbeats every 200 ms)."""
    auth = start_cluster(tmp_path)
    started = start_node(tmp_path / "node", auth, max_staleness="1s")
    try:
        yield started
    finally:
        started.close()
        auth.stop()


async def strict_role(node: Node) -> None:
    async with AuthClient.connect(f"unix:{node.auth.admin_socket}") as admin:
        await admin.put_role(Role("secops", lock_mode=LockingMode.STRICT), PutMode.UPSERT)
        await admin.put_role(Role("dev"), PutMode.UPSERT)


async def end_all(duration: str) -> None:
    """Clean up what a best_effort session left running when the test ended it."""
    for pid in await sleeping(duration):
        os.kill(pid, signal.SIGKILL)


async def test_with_the_auth_server_gone_strict_sessions_end_and_best_effort_ones_stay(
    node: Node,
) -> None:
    """The auth server stops: after max_staleness the strict session ends with the
    lock-out message and nothing of it left; the best_effort session keeps running."""
    await strict_role(node)
    strict, relaxed = marker(), marker()
    strict_key = await node.key("strict", STRICT)
    relaxed_key = await node.key("relaxed", BEST_EFFORT)
    strict_client = await node.ssh(strict_key, f"sleep {strict}")
    relaxed_client = await node.ssh(relaxed_key, f"sleep {relaxed}")

    async def both() -> bool:
        return bool(await sleeping(strict) and await sleeping(relaxed))

    async def strict_gone() -> bool:
        return not await sleeping(strict)

    await eventually(both, what="both sessions")
    await asyncio.to_thread(node.auth.stop)
    try:
        async with asyncio.timeout(30):
            _, stderr = await strict_client.communicate()
        assert f"ERROR: {STRICT_LOCKOUT_MESSAGE}" in stderr.decode()
        await eventually(strict_gone, what="the strict session's processes gone")
        assert relaxed_client.returncode is None
        assert await sleeping(relaxed)
    finally:
        relaxed_client.kill()
        await relaxed_client.wait()
        await end_all(relaxed)


async def test_with_the_agent_down_a_new_session_is_refused_with_the_lockout_message(
    node: Node,
) -> None:
    """No agent to ask: the session is refused (agent_unreachable: refuse, the default)
    and the user sees the lock-out message; the command never runs."""
    await strict_role(node)
    key = await node.key("strict", STRICT)
    await asyncio.to_thread(node.stop_agent)
    client = await node.ssh(key, "echo should-not-run")
    async with asyncio.timeout(30):
        stdout, stderr = await client.communicate()
    assert stderr.decode().startswith(f"ERROR: {STRICT_LOCKOUT_MESSAGE}\n")
    assert stdout == b""
    assert client.returncode != 0

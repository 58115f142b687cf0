"""Fate sharing between real processes (docs/sidecar-api.md): sidecar processes using the
client library on a real agent's Unix socket, and a real `lockd agent` process killed
with SIGKILL under a sidecar."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lockd.agent.sidecar_channel import EndReason
from lockd.client import AgentClient, SessionMetadata, SessionProtocol, SessionRequest
from lockd.domain.backoff import Backoff
from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode
from lockd.domain.resources import Role
from tests.agent.helpers import CLUSTER, Cluster, terminated_within, user_lock
from tests.support import WAIT, eventually

ROOT = Path(__file__).resolve().parents[2]
SSH = SessionMetadata(SessionProtocol.SSH, "192.0.2.9:40000", "node-1")


class SidecarProcess:
    """`python -m tests.agent.sidecar_process SOCKET`, driven over its stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, socket: Path, *args: str) -> SidecarProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.agent.sidecar_process",
            str(socket),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        return cls(process)

    async def call(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        async with asyncio.timeout(WAIT * 2):
            line = await self.process.stdout.readline()
        assert line, "the sidecar process died"
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


@contextlib.asynccontextmanager
async def sidecar_process(socket: Path, *args: str) -> AsyncIterator[SidecarProcess]:
    sidecar = await SidecarProcess.start(socket, *args)
    try:
        yield sidecar
    finally:
        await sidecar.kill()


async def test_thousands_of_sessions_on_one_channel_and_one_message_for_a_lock(
    cluster: Cluster,
) -> None:
    """A sidecar process registers 3,000 sessions on its one channel; a lock on alice
    ends exactly her 300 sessions, in one termination message, and no other."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    async with sidecar_process(agent.socket) as sidecar:
        assert await sidecar.call(cmd="open", prefix="o", count=2700, user="bob") == {
            "allowed": 2700,
            "denied": 0,
        }
        await sidecar.call(cmd="open", prefix="a", count=300, user="alice")
        status = await agent.status()
        assert (status.sessions, status.channels) == (3000, 1)
        await auth.client().create_lock(user_lock("l1", message="bye"))

        async def ended() -> dict[str, Any] | None:
            reply = await sidecar.call(cmd="ended")
            return reply if len(reply["ended"]) >= 300 else None

        reply = await eventually(ended, what="alice's sessions ended")
        assert set(reply["ended"]) == {f"a-{index}" for index in range(300)}
        assert {tuple(value) for value in reply["ended"].values()} == {
            ('lock targeting User:"alice" is in force: bye', "l1", "lock")
        }
        assert reply["messages"] == 1
        assert (await agent.status()).sessions == 2700


async def test_a_killed_sidecar_takes_its_sessions_with_it(cluster: Cluster) -> None:
    """kill -9 of a sidecar process: the agent unregisters its sessions and its session
    count returns to what it was; another sidecar's sessions stay."""
    await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    await agent.open(Identity(user="carol"))
    async with sidecar_process(agent.socket) as doomed, sidecar_process(agent.socket) as kept:
        await doomed.call(cmd="open", prefix="d", count=2000, user="bob")
        await kept.call(cmd="open", prefix="k", count=10, user="bob")
        assert (await agent.status()).sessions == 2011
        await doomed.kill()
        await eventually(
            lambda: agent.app.runtime.view.session_count == 11, what="the sessions unregistered"
        )
        assert (await kept.call(cmd="live")) == {"live": 10}
    assert agent.metric("lockd_agent_sidecar_channels") in (1.0, 2.0)


async def test_a_sidecar_that_stops_reading_is_ended_and_delays_no_other(
    cluster: Cluster,
) -> None:
    """A sidecar process keeps sending registrations but stops reading its channel. While
    the agent's answers pile up for it, a lock still reaches another sidecar's session at
    once; when the backlog passes its bound (bytes, not time), the agent ends the stalled
    channel (UNAVAILABLE, slow consumer) and unregisters its sessions."""
    auth = await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    hub = agent.app.hub
    healthy = await agent.open(Identity(user="alice"))
    async with sidecar_process(agent.socket, "--raw") as stalled:
        channel_id = (await stalled.call(cmd="hello"))["channel"]
        assert await stalled.call(cmd="open", prefix="st", count=10, user="carol") == {
            "allowed": 10
        }
        channel = hub.channels[channel_id]
        while not channel.queued_messages:  # until its writer waits on the unread stream
            assert (await stalled.call(cmd="flood"))["sent"]
        await auth.client().create_lock(user_lock("l1"))
        assert (await terminated_within(healthy))[1] == "l1"
        assert channel_id in hub.channels  # still stalled, not yet ended
        floods = 0
        while channel_id in hub.channels:
            floods += 1
            assert floods <= 64, "the backlog bound never ended the channel"
            if not (await stalled.call(cmd="flood"))["sent"]:
                await eventually(lambda: channel_id not in hub.channels, what="the channel ended")
        assert channel.end_reason is EndReason.SLOW_CONSUMER
        assert agent.metric("lockd_agent_sidecar_channels_ended_total", reason="slow_consumer") == 1
        assert channel.queued_bytes == 0
        assert agent.app.runtime.view.session_count == 0
        drained = await stalled.call(cmd="drain")
        assert drained["code"] == "UNAVAILABLE"
        assert drained["details"].startswith("slow consumer: more than")
    second = await agent.open(Identity(user="bob"))
    await auth.client().create_lock(user_lock("l2", user="bob"))
    assert (await terminated_within(second))[1] == "l2"


class AgentProcess:
    """A real `lockd agent` (python -m lockd agent --config FILE)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lockd",
            "agent",
            "--config",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=ROOT,
        )

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, signal.SIGKILL)
            await self.process.wait()


@pytest.fixture
async def agent_process(
    cluster: Cluster, tmp_path: Path, socket_dir: Path
) -> AsyncIterator[tuple[AgentProcess, Path]]:
    auth = await cluster.start_auth()
    socket = socket_dir / "agent.sock"
    config = tmp_path / "agent.yaml"
    config.write_text(
        json.dumps(
            {
                "cluster_name": CLUSTER,
                "data_dir": str(tmp_path / "agent"),
                "log": {"format": "json", "level": "warning"},
                "audit": {"sink": str(tmp_path / "audit.log")},
                "agent_service": {
                    "enabled": True,
                    "server_id": "node-1",
                    "auth_servers": [auth.address],
                    "socket": str(socket),
                    "metrics_addr": "",
                    "insecure": True,
                },
            }
        )
    )
    process = AgentProcess(config)
    await process.start()
    try:
        yield process, socket
    finally:
        await process.kill()


async def test_a_killed_agent_ends_strict_sessions_and_keeps_best_effort_ones(
    cluster: Cluster, agent_process: tuple[AgentProcess, Path]
) -> None:
    """kill -9 of the agent: the strict session is told to terminate at once (lock-out
    message); best_effort ones stay, register again once the agent is back, and one
    whose user was locked meanwhile then ends with that lock's message."""
    process, socket = agent_process
    admin = cluster.auth.client()
    await admin.put_role(Role("ops", lock_mode=LockingMode.STRICT), PutMode.UPSERT)
    client = AgentClient.connect(socket, sidecar="t", backoff=Backoff(base=0.05, cap=0.3))
    try:

        async def synced() -> bool:
            with contextlib.suppress(Exception):
                return (await client.status()).state == "synced"
            return False

        await eventually(synced, within=WAIT * 2, what="the agent process synced")
        strict, kept, locked = await client.open_sessions(
            [
                SessionRequest(Identity(user="olga", roles=("ops",)), SSH, "strict"),
                SessionRequest(Identity(user="carol"), SSH, "kept"),
                SessionRequest(Identity(user="bob"), SSH, "locked"),
            ]
        )
        assert strict.decision.mode is LockingMode.STRICT
        assert strict.decision.allowed
        await process.kill()
        termination = await strict.terminated()
        assert (termination.reason, termination.cause) == (
            STRICT_LOCKOUT_MESSAGE,
            "agent_unavailable",
        )
        await admin.create_lock(user_lock("meanwhile", user="bob", message="while away"))
        assert not kept.is_terminated()
        assert not locked.is_terminated()
        await process.start()
        assert await terminated_within(locked, WAIT * 2) == (
            'lock targeting User:"bob" is in force: while away',
            "meanwhile",
        )

        async def reregistered() -> bool:
            with contextlib.suppress(Exception):
                return (await client.status()).sessions == 1
            return False

        await eventually(reregistered, within=WAIT * 2, what="carol registered again")
        assert not kept.is_terminated()
    finally:
        await client.close()

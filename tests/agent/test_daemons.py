"""The review's reproductions with real `lockd auth` and `lockd agent` processes: kill -9,
damaged view files, a frozen auth server, a frozen agent, and a lock on the agent
itself confirmed by `lockctl lock --wait`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockd.agent.persist import VIEW_FILE_NAME
from lockd.client import AgentClient, AuthClient
from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE, Lock, LockTarget
from lockd.domain.modes import LockingMode
from tests.agent.daemons import AuthDaemon, Daemons, dead_address
from tests.support import WAIT, eventually

LOCKCTL = str(Path(sys.executable).parent / "lockctl")


@pytest.fixture
def daemons(tmp_path: Path, socket_dir: Path) -> Iterator[Daemons]:
    manager = Daemons(tmp_path, socket_dir)
    try:
        yield manager
    finally:
        manager.close()


async def agent_synced(socket: Path, revision: int) -> None:
    async with AgentClient.connect(str(socket)) as client:

        async def synced() -> bool:
            status = await client.status()
            return status.state == "synced" and status.revision >= revision

        await eventually(synced, what=f"the agent synced at {revision}")


async def connected_to(auth: AuthDaemon, server_id: str = "node-1", within: float = WAIT) -> None:
    async with auth.admin() as admin:

        async def connected() -> bool:
            status = await admin.status()
            return any(a.server_id == server_id and a.connected for a in status.agents)

        await eventually(connected, within=within, what=f"{server_id} on {auth.address}")


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
async def test_a_strict_agent_whose_view_was_lost_refuses_until_it_syncs(
    daemons: Daemons, damage: str
) -> None:
    """Strict cluster, agent synced; kill -9 both; damage view.json; start the agent
    alone: every CheckAccess is refused in strict mode (it used to be allowed as
    best_effort), the locked user's included."""
    auth = await daemons.auth(strict=True)
    agent = await daemons.agent([auth.address])
    async with auth.admin() as admin:
        lock = Lock("l-mallory", LockTarget(user="mallory"), message="compromised")
        _, revision = await admin.create_lock(lock)
    await agent_synced(agent.socket, revision)
    view = agent.data_dir / VIEW_FILE_NAME
    await eventually(view.exists, what="the view to be saved")
    auth.kill()
    agent.kill()
    if damage == "truncated":
        view.write_bytes(view.read_bytes()[: view.stat().st_size // 2])
    else:
        view.unlink()

    again = await daemons.agent([auth.address], name="again", data_dir=agent.data_dir)
    async with AgentClient.connect(str(again.socket)) as client:
        for user in ("alice", "mallory"):
            decision = await client.check_access(Identity(user=user))
            assert not decision.allowed, user
            assert decision.mode is LockingMode.STRICT
            assert decision.reason == STRICT_LOCKOUT_MESSAGE


async def test_a_revision_the_server_shows_as_applied_survives_kill_9(daemons: Daemons) -> None:
    """Lock A, ~0.5 s later lock B; once GetClusterStatus shows the agent at B, kill -9
    it and start it with the auth server unreachable: B's user is refused. Three
    rounds (the old agent acked before saving and lost B in most of them)."""
    auth = await daemons.auth()
    data_dir = daemons.directory / "agent-data"
    async with auth.admin() as admin:
        for round_ in range(3):
            agent = await daemons.agent([auth.address], name=f"up-{round_}", data_dir=data_dir)
            await agent_synced(agent.socket, (await admin.status()).revision)
            await admin.create_lock(Lock(f"a-{round_}", LockTarget(user=f"a{round_}")))
            await asyncio.sleep(0.5)
            _, b = await admin.create_lock(Lock(f"b-{round_}", LockTarget(user=f"b{round_}")))

            async def shown(b: int = b) -> bool:
                status = await admin.status()
                return any(a.connected and a.applied_revision >= b for a in status.agents)

            await eventually(shown, what="the server to show the agent at B")
            agent.kill()
            down = await daemons.agent([dead_address()], name=f"down-{round_}", data_dir=data_dir)
            async with AgentClient.connect(str(down.socket)) as client:
                decision = await client.check_access(Identity(user=f"b{round_}"))
            assert not decision.allowed, round_
            assert decision.lock_name == f"b-{round_}"
            down.kill()


async def test_a_frozen_auth_server_is_left_for_the_next_one_within_seconds(
    daemons: Daemons,
) -> None:
    """SIGSTOP the auth server the agent streams from (heartbeat 200 ms): the agent
    abandons the silent stream (3 heartbeats + 1 s) and dials the next auth server,
    instead of waiting ~30-80 s for TCP or HTTP/2 keepalive."""
    first = await daemons.auth("first")
    second = await daemons.auth("second")
    await daemons.agent([first.address, second.address])
    await connected_to(first)
    first.freeze()
    started = time.monotonic()
    try:
        await connected_to(second, within=WAIT)
    finally:
        first.thaw()
    # The target is 1.6 s (+ a reconnect backoff of at most 0.5 s); 25 s leaves room for
    # a loaded machine and still fails the keepalive-only agent (30 s at best, ~80 s seen).
    assert time.monotonic() - started < 25


async def test_status_shows_a_frozen_agent_as_unresponsive(daemons: Daemons) -> None:
    """An agent frozen with SIGSTOP is `unresponsive` in the status (nothing received for
    3 heartbeat intervals), not its last self-report `synced`; thawed, it is synced."""
    auth = await daemons.auth()
    agent = await daemons.agent([auth.address])
    async with auth.admin() as admin:

        async def state_is(state: str) -> bool:
            agents = (await admin.status()).agents
            return any(a.connected and a.state == state for a in agents)

        await eventually(lambda: state_is("synced"), what="synced")
        agent.freeze()
        try:
            await eventually(lambda: state_is("unresponsive"), what="unresponsive")
            (record,) = (await admin.status()).agents
            assert record.last_frame is not None
        finally:
            agent.thaw()
        await eventually(lambda: state_is("synced"), what="synced again")


async def test_lock_wait_counts_the_agent_the_lock_cuts_off(daemons: Daemons) -> None:
    """`lockctl lock --server-id=<agent> --wait`: the agent applies the lock, acks it and
    is cut off by it; lockctl counts it as confirmed and says it was cut off."""
    auth = await daemons.auth()
    agent = await daemons.agent([auth.address])
    await connected_to(auth)
    async with AuthClient.connect(str(auth.admin_socket)) as admin:
        await agent_synced(agent.socket, (await admin.status()).revision)
    result = await asyncio.to_thread(
        subprocess.run,
        [
            LOCKCTL,
            "-c",
            str(auth.directory / "lockd.yaml"),
            "lock",
            "--server-id=node-1",
            "--message=retired",
            "--wait=20s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("lock applied by 1/1 agents in ") for line in lines), lines
    assert "node-1 applied the lock and was then cut off by a lock on it" in lines

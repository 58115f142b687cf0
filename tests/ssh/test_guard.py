"""The guard against real OpenSSH: connections without a session (`ssh -N -L`) are checked
when they authenticate and ended by a lock; a session whose user stopped the hook and
ignores signals still ends; the ForceCommand hook alone (no guard) still works."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lockd.bench.sshd import LOGIN
from lockd.client import AuthClient
from lockd.domain.lock import LockTarget
from tests.cli.helpers import AuthServer
from tests.ssh.helpers import (
    ALICE,
    MESSAGE,
    Node,
    gone,
    lock,
    lock_message,
    locked_out,
    marker,
    no_connection_left,
    running,
    start_node,
)
from tests.support import eventually, free_port

ALICE_LOCK = LockTarget(user="alice")
DAEMONS = "setsid sleep {m} & (sleep {m} &) ; nohup sleep {m} >/dev/null 2>&1 &"


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A TCP echo server on loopback: what the port forwards lead to."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def forwarded_echo(port: int) -> bytes:
    """Send "ping" through the forwarded port; what comes back (b"" or a reset when the
    server refuses the forward, ConnectionRefusedError when no forward listens)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"ping")
        async with asyncio.timeout(20):
            return await reader.read(4)
    finally:
        writer.close()


async def listening(port: int, client: asyncio.subprocess.Process) -> bool:
    """The ssh client's forward listens (or the client is gone already)."""

    async def ready() -> bool:
        if client.returncode is not None:
            return True
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await eventually(ready, what="the forwarded port listening")
    return client.returncode is None


async def working_forward(
    node: Node, key: Path, local: int, echo_port: int, login: str = LOGIN
) -> asyncio.subprocess.Process:
    """An `ssh -N -L` client whose forward carries data (retried until a lock that was
    just removed is gone from the agent's view too)."""
    forward = ("-N", "-L", f"{local}:127.0.0.1:{echo_port}")

    async def allowed() -> asyncio.subprocess.Process | None:
        client = await node.ssh(key, options=forward, login=login)
        if await listening(local, client) and await forwarded_echo(local) == b"ping":
            return client
        client.kill()
        await client.communicate()
        return None

    client: asyncio.subprocess.Process = await eventually(allowed, what="a working forward")
    return client


async def test_a_forward_only_connection_is_refused_while_locked_and_ended_by_a_lock(
    node: Node, admin: AuthClient, echo_port: int
) -> None:
    """`ssh -N -L` opens no session, so no ForceCommand runs. Locked: its forward carries
    nothing and the connection ends. Unlocked: the forward works until a lock arrives,
    then the connection ends, the port stops forwarding, and nothing of it is left."""
    key = await node.key("forward-only", ALICE)
    local = free_port()
    forward = ("-N", "-L", f"{local}:127.0.0.1:{echo_port}")
    name = await lock(admin, ALICE_LOCK)
    refused = await node.ssh(key, options=forward)
    if await listening(local, refused):
        # The server refuses the channel (ssh then closes or resets the forwarded
        # connection), or the guard ended the connection meanwhile (refused).
        with contextlib.suppress(ConnectionError):
            assert await forwarded_echo(local) == b""
    async with asyncio.timeout(30):
        await refused.communicate()
    assert refused.returncode == 255
    await admin.delete_lock(name)
    client = await working_forward(node, key, local, echo_port)
    await locked_out(admin, ALICE_LOCK, client)
    with pytest.raises(ConnectionRefusedError):
        await forwarded_echo(local)
    await no_connection_left(node)


async def test_a_non_root_logins_forward_only_connection_is_ended_by_a_login_lock(
    node: Node, admin: AuthClient, echo_port: int
) -> None:
    """A login other than root (`nobody`: its shell is nologin, so only `-N` works) has
    its channels in an sshd child running as the login: a lock on the login kills that
    child too, and the privileged sshd process exits."""
    key = await node.key("nobody", ALICE, login="nobody")
    local = free_port()
    client = await working_forward(node, key, local, echo_port, login="nobody")
    await locked_out(admin, LockTarget(login="nobody"), client)
    await no_connection_left(node)


async def test_a_session_that_stopped_its_hook_and_ignores_signals_still_ends(
    node: Node, admin: AuthClient
) -> None:
    """The user stops the ForceCommand hook and ignores every signal it can: the guard
    (root) still writes the message and kills every process of the connection."""
    key = await node.key("stubborn", ALICE)
    name = marker()
    stubborn = f"kill -STOP $PPID; trap '' HUP INT QUIT TERM; {DAEMONS.format(m=name)} sleep {name}"
    client = await node.ssh(key, stubborn)
    await running(name, 4)
    _, stderr = await locked_out(admin, ALICE_LOCK, client)
    assert lock_message(ALICE_LOCK) in stderr
    await gone(name)
    await no_connection_left(node)


@pytest.fixture(scope="module")
def hook_only(auth: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node without the guard: `lockd ssh-session` alone as the ForceCommand."""
    started = start_node(tmp_path_factory.mktemp("hook-only"), auth, guarded=False)
    try:
        yield started
    finally:
        started.close()


async def test_the_hook_alone_ends_a_session_with_the_message_and_refuses_the_next(
    hook_only: Node, admin: AuthClient
) -> None:
    """Without the guard the ForceCommand hook checks and supervises each session: a lock
    ends a long command (and the processes it daemonized) with the message, and the
    next login is refused with exactly the message."""
    key = await hook_only.key("hook-only", ALICE)
    name = marker()
    client = await hook_only.ssh(key, DAEMONS.format(m=name) + f" sleep {name}")
    await running(name, 4)
    _, message = await locked_out(admin, ALICE_LOCK, client)
    assert lock_message(ALICE_LOCK) in message
    await gone(name)
    refused = await hook_only.ssh(key, "echo should-not-run")
    async with asyncio.timeout(20):
        stdout, stderr = await refused.communicate()
    expected = f'ERROR: lock targeting User:"alice" is in force: {MESSAGE}\n'
    assert stderr.decode().splitlines(keepends=True)[0] == expected
    assert stdout == b""

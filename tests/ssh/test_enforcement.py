"""Locks against real OpenSSH sessions: sshd runs `lockd ssh-session` as its ForceCommand,
real `ssh`, `sftp` and `scp` clients connect, and locks go through a real auth server and
node agent. A hit session ends with the lock's message on the client and nothing of it
left running; a new one is refused with the exact message until the lock is removed."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from lockd.bench.sshd import LOCKD, LOGIN
from lockd.client import AuthClient
from lockd.domain.lock import LockTarget
from tests.cli.helpers import AuthServer, lockctl
from tests.ssh.conftest import MAPPED_USER
from tests.ssh.helpers import (
    ALICE,
    MESSAGE,
    Node,
    gone,
    lock,
    lock_message,
    locked_out,
    marker,
    running,
)
from tests.support import eventually, free_port

DAEMONS = "setsid sleep {m} & (sleep {m} &) ; nohup sleep {m} >/dev/null 2>&1 &"


def target_for(kind: str, node: Node) -> LockTarget:
    values = {
        "user": "alice",
        "role": "dev",
        "login": LOGIN,
        "server_id": node.server_id,
        "mfa_device": "mfa-7",
        "device": "laptop-3",
    }
    return LockTarget(**{kind: values[kind]})


@pytest.mark.parametrize("kind", ["user", "role", "login", "server_id", "mfa_device", "device"])
async def test_a_lock_ends_a_long_command_with_its_message_and_no_process_left(
    node: Node, admin: AuthClient, kind: str
) -> None:
    """A long command (with processes that daemonize) ends when a lock on any attribute
    of the session arrives: the message on the client's stderr, the connection closed,
    every process gone."""
    key = await node.key(f"cmd-{kind}", ALICE)
    name = marker()
    client = await node.ssh(key, DAEMONS.format(m=name) + f" sleep {name}")
    await running(name, 4)
    target = target_for(kind, node)
    _, stderr = await locked_out(admin, target, client)
    assert lock_message(target) in stderr
    await gone(name)


@pytest.mark.parametrize("kind", ["user", "role", "login", "server_id"])
async def test_a_lock_ends_an_interactive_pty_session_with_its_message_on_the_terminal(
    node: Node, admin: AuthClient, kind: str
) -> None:
    """A login shell on a PTY, with a job in the foreground: the lock's message appears
    on the user's terminal and the shell and its job are gone."""
    key = await node.key(f"pty-{kind}", ALICE)
    name = marker()
    client = await node.ssh(key, options=("-tt",), stdin=True)
    assert client.stdin is not None
    client.stdin.write(f"sleep {name} & sleep {name}\n".encode())
    await running(name, 2)
    target = target_for(kind, node)
    stdout, _ = await locked_out(admin, target, client)
    assert lock_message(target) in stdout  # a PTY: the terminal is stdout
    await gone(name)


async def test_a_new_session_is_refused_with_the_exact_message_until_lockctl_rm(
    node: Node, admin: AuthClient, auth: AuthServer
) -> None:
    """While the lock is in force the user's program never runs: exactly the SPEC text on
    stderr, a non-zero exit. After `lockctl rm` the same key logs in again."""
    key = await node.key("refused", ALICE)
    name = await lock(admin, LockTarget(user="alice"))
    # With a port forward: the refusal ends the whole connection, not just the session.
    forward = ("-L", f"{free_port()}:127.0.0.1:{node.port}")
    refused = await node.ssh(key, "echo should-not-run", options=forward)
    async with asyncio.timeout(20):
        stdout, stderr = await refused.communicate()
    first_line = stderr.decode().splitlines(keepends=True)[0]
    assert first_line == f'ERROR: lock targeting User:"alice" is in force: {MESSAGE}\n'
    assert stdout == b""
    assert refused.returncode != 0
    removed = await asyncio.to_thread(lockctl, auth, "rm", f"locks/{name}")
    assert removed.returncode == 0, removed.stderr

    async def logs_in() -> bool:
        allowed = await node.ssh(key, "echo welcome")
        stdout, _ = await allowed.communicate()
        return allowed.returncode == 0 and stdout == b"welcome\n"

    await eventually(logs_in, what="a login after lockctl rm")


async def test_a_plain_key_is_the_lockd_user_the_login_maps_to(
    node: Node, admin: AuthClient
) -> None:
    """A session with a plain key (authorized_keys) is the user agent_service.ssh.logins
    maps its login to, so a lock on that user ends it; a certificate's user is not."""
    key = await node.key("plain")
    name = marker()
    client = await node.ssh(key, f"sleep {name}")
    await running(name, 1)
    target = LockTarget(user=MAPPED_USER)
    await lock(admin, target)
    async with asyncio.timeout(20):
        _, stderr = await client.communicate()
    assert lock_message(target) in stderr.decode()
    await gone(name)


async def test_a_port_forward_of_the_session_dies_with_it(node: Node, admin: AuthClient) -> None:
    """A local port forward opened with the session ends with the connection: the
    forwarded TCP connection is closed and the forwarded port refuses new ones."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    target_port = server.sockets[0].getsockname()[1]
    local_port = free_port()
    key = await node.key("forward", ALICE)
    name = marker()
    forward = f"{local_port}:127.0.0.1:{target_port}"
    client = await node.ssh(key, f"sleep {name}", options=("-L", forward))
    await running(name, 1)

    async def connected() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.open_connection("127.0.0.1", local_port)
        except OSError:
            return None

    reader, writer = await eventually(connected, what="the forwarded port")
    writer.write(b"ping")
    assert await asyncio.wait_for(reader.readexactly(4), 20) == b"ping"
    await lock(admin, LockTarget(user="alice"))
    async with asyncio.timeout(20):
        await client.communicate()
        assert await reader.read(100) == b""  # the forwarded connection is closed
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", local_port)
    writer.close()
    server.close()
    await server.wait_closed()
    await gone(name)


async def test_sftp_and_scp_transfer_files_while_unlocked(node: Node, tmp_path: Path) -> None:
    """The sftp subsystem (sftp-server run by the hook) and scp work through the hook."""
    key = await node.key("transfer", ALICE)
    source = tmp_path / "source.bin"
    source.write_bytes(bytes(range(256)) * 400)
    remote = node.directory / "uploaded.bin"
    common = node.sshd.ssh_options(key)
    batch = tmp_path / "batch"
    batch.write_text(f"put {source} {remote}\nget {remote} {tmp_path / 'back.bin'}\n")
    sftp = await asyncio.to_thread(
        subprocess.run,
        ["sftp", *_sftp_options(common), "-b", str(batch), f"{LOGIN}@127.0.0.1"],
        capture_output=True,
        timeout=60,
    )
    assert sftp.returncode == 0, sftp.stderr
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    scp = await asyncio.to_thread(
        subprocess.run,
        ["scp", *_sftp_options(common), f"{LOGIN}@127.0.0.1:{remote}", str(tmp_path / "scp.bin")],
        capture_output=True,
        timeout=60,
    )
    assert scp.returncode == 0, scp.stderr
    assert (tmp_path / "scp.bin").read_bytes() == source.read_bytes()


def _sftp_options(ssh_options: list[str]) -> list[str]:
    """ssh's options for sftp and scp, whose port flag is -P."""
    return ["-P" if option == "-p" else option for option in ssh_options]


async def pam_account(node: Node, login: str) -> tuple[int, str]:
    """`lockd ssh-session --pam-account` as pam_exec runs it (PAM_USER set)."""
    check = await asyncio.create_subprocess_exec(
        LOCKD,
        "ssh-session",
        "--config",
        str(node.config),
        "--pam-account",
        env={**os.environ, "PAM_USER": login, "PAM_TYPE": "account"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await check.communicate()
    assert check.returncode is not None
    return check.returncode, stderr.decode()


async def test_the_pam_account_check_refuses_a_locked_login_and_allows_it_after(
    node: Node, admin: AuthClient
) -> None:
    """The optional pam_exec check: exit 1 with the lock's message while the login's
    mapped user is locked, exit 0 otherwise."""
    assert await pam_account(node, LOGIN) == (0, "")
    name = await lock(admin, LockTarget(user=MAPPED_USER))
    assert await pam_account(node, LOGIN) == (1, lock_message(LockTarget(user=MAPPED_USER)) + "\n")
    await admin.delete_lock(name)

    async def allowed() -> bool:
        return (await pam_account(node, LOGIN))[0] == 0

    await eventually(allowed, what="the PAM check allowing the login again")

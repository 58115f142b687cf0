"""A node for the SSH tests: a real `lockd agent` and a throwaway sshd running
`lockd ssh-session` as its ForceCommand (`lockd.bench.sshd`), next to a plaintext
(loopback) `lockd auth` subprocess, so that either can be stopped on its own.

Sessions log in as root (`PermitRootLogin yes` in the throwaway config): the tests need
no OS user of their own and change nothing in /etc.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lockd.bench.sshd import LOCKD, LOGIN, ThrowawaySSHD, processes_under
from lockd.client import AuthClient
from lockd.domain.lock import Lock, LockTarget
from lockd.pki import new_key
from lockd.pki_openssh import SSHUserCA, SSHUserIdentity
from tests.cli.helpers import AuthServer, start_auth_server
from tests.support import eventually

SSH = shutil.which("ssh") or "/usr/bin/ssh"
START_TIMEOUT = 20.0
MESSAGE = "Suspicious activity."
ALICE = SSHUserIdentity("alice", ("dev",), mfa_device="mfa-7", device="laptop-3")


@dataclass
class Node:
    """One node: `lockd agent` (with its `agent_service.ssh` settings) and an sshd."""

    directory: Path
    auth: AuthServer
    sshd: ThrowawaySSHD
    server_id: str
    max_staleness: str
    agent: subprocess.Popen[bytes] | None = None
    logins: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.directory / "agent.yaml"

    @property
    def socket(self) -> Path:
        return self.directory / "agent.sock"

    @property
    def port(self) -> int:
        return self.sshd.port

    def write_agent_config(self) -> None:
        logins = "".join(f"      {login}: {user}\n" for login, user in self.logins.items())
        self.config.write_text(
            "cluster_name: lockctl.test\n"
            f"data_dir: {self.directory / 'data'}\n"
            "log: {format: json, level: info}\n"
            "audit: {sink: stderr}\n"
            "agent_service:\n"
            "  enabled: true\n"
            f"  server_id: {self.server_id}\n"
            f"  auth_servers: ['{self.auth.address}']\n"
            "  insecure: true\n"
            f"  socket: {self.socket}\n"
            "  socket_mode: '0666'\n"
            "  metrics_addr: ''\n"
            f"  max_staleness: {self.max_staleness}\n"
            "  ssh:\n"
            f"    user_ca_keys: {self.sshd.ca_file}\n"
            + (f"    logins:\n{logins}" if logins else ""),
            encoding="utf-8",
        )

    def start_agent(self) -> None:
        self.write_agent_config()
        with (self.directory / "agent.log").open("ab") as log:
            self.agent = subprocess.Popen(
                [LOCKD, "agent", "--config", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.socket.exists():
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lockd agent did not start: {self.agent_log()}")
            time.sleep(0.05)

    def stop_agent(self) -> None:
        agent, self.agent = self.agent, None
        if agent is None or agent.poll() is not None:
            return
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)

    def agent_log(self) -> str:
        path = self.directory / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ssh_args(self, key: Path, *options: str, login: str = LOGIN) -> list[str]:
        return [SSH, *self.sshd.ssh_options(key), *options, f"{login}@127.0.0.1"]

    async def ssh(
        self,
        key: Path,
        *command: str,
        options: tuple[str, ...] = (),
        stdin: bool = False,
        login: str = LOGIN,
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.ssh_args(key, *options, login=login),
            *command,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def key(
        self, name: str, identity: SSHUserIdentity | None = None, login: str = LOGIN
    ) -> Path:
        """`ThrowawaySSHD.user_key` off the event loop (it runs ssh-keygen)."""
        return await asyncio.to_thread(self.sshd.user_key, name, identity, (login,))

    def close(self) -> None:
        self.sshd.stop()
        self.stop_agent()


def start_node(
    directory: Path,
    auth: AuthServer,
    max_staleness: str = "5m",
    logins: dict[str, str] | None = None,
    guarded: bool = True,
) -> Node:
    """A node as docs/ssh.md sets it up: with the guard, or (`guarded=False`) the
    ForceCommand hook alone."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = SSHUserCA.derived_from(new_key(), "lockctl.test")
    sshd = ThrowawaySSHD(directory, ca, directory / "agent.yaml", guarded=guarded)
    node = Node(directory, auth, sshd, str(uuid.uuid4()), max_staleness, logins=logins or {})
    try:
        node.start_agent()
        sshd.start()
    except BaseException:
        node.close()
        raise
    return node


def start_cluster(directory: Path, locking_mode: str = "") -> AuthServer:
    """A plaintext `lockd auth` on loopback (heartbeats every 200 ms)."""
    return start_auth_server(directory / "auth", locking_mode=locking_mode)


def marker() -> str:
    """A `sleep` duration no other process on the machine uses: it names a session's
    processes, so the test can tell whether any of them is left."""
    return f"3600.{uuid.uuid4().int % 10**9:09d}"


async def sleeping(duration: str) -> list[int]:
    """`sleeping_now` off the event loop."""
    return await asyncio.to_thread(sleeping_now, duration)


def sleeping_now(duration: str) -> list[int]:
    """The live `sleep DURATION` processes (not the clients whose command names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if argv[:2] == [b"sleep", duration.encode()] and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def lock_message(target: LockTarget) -> str:
    return f"ERROR: {Lock('x', target, message=MESSAGE).in_force_message()}"


async def lock(admin: AuthClient, target: LockTarget) -> str:
    name = str(uuid.uuid4())
    await admin.create_lock(Lock(name, target, message=MESSAGE))
    return name


async def locked_out(
    admin: AuthClient, target: LockTarget, client: asyncio.subprocess.Process
) -> tuple[str, str]:
    """Lock `target` and wait for the ssh client to exit because its connection was
    closed by the remote host (ssh's 255); its (stdout, stderr)."""
    await lock(admin, target)
    async with asyncio.timeout(20):
        stdout, stderr = await client.communicate()
    assert client.returncode == 255
    return stdout.decode(), stderr.decode()


async def running(name: str, count: int) -> None:
    async def enough() -> bool:
        return len(await sleeping(name)) >= count

    await eventually(enough, what=f"{count} x {name}")


async def gone(name: str) -> None:
    async def none_left() -> bool:
        return not await sleeping(name)

    await eventually(none_left, what=f"no process {name} left")


async def no_connection_left(node: Node) -> None:
    """Nothing of any connection is left: the listening sshd has no child."""
    process = node.sshd.process
    assert process is not None

    async def none() -> bool:
        return not await asyncio.to_thread(processes_under, process.pid)

    await eventually(none, what="no process of any SSH connection left")

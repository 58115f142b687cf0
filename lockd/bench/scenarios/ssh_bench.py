"""`ssh`: real OpenSSH sessions under `lockd ssh-session guard`, ended by a lock.

Real processes: `lockd auth`, `lockd agent`, a throwaway sshd (`lockd.bench.sshd`, as
root) with `lockd ssh-session guard` next to it (its auth commands and the `--guarded`
ForceCommand, as docs/ssh.md sets them up), and `--sessions` real `ssh` clients per
round, each running a long `sleep` under one user's certificate. Each round creates a
lock on that user and measures, for every session:

- **guard_end**: the guard learning of the termination (the agent's SessionsTerminated
  read off its channel) → the connection's sshd monitor gone: stopping the session's
  processes, the message written and read by sshd, the kills, sshd's exit. From the
  guard's log ("connection ended", took_ms). Together with the agent's apply and
  send (about a millisecond, `lockd bench terminate`), this is "lock event at the
  agent → the connection ended". **guard_kill** is the part up to the kills sent
  (killed_ms): what the guard itself spends; the rest is sshd exiting.

- **lock → disconnect**: CreateLock called → each `ssh` client exiting because its
  connection was closed. An upper bound of "lock event at the agent → connection
  ended": it also spans the commit and the fan-out (the agent applies a lock about a
  millisecond after its commit, see `lockd bench propagation`), the hook waking up,
  stopping and killing the session's processes, the message reaching the client, the
  sshd process ending and the client noticing. (The agent's audit records come after
  its signals, and CreateLock's return is seen late when the loop is busy with the
  exits, so neither makes an honest start.)
- **CreateLock → last disconnect**: CreateLock called → the last client of the round
  exiting.

Sessions start in batches (sshd's MaxStartups, and each login runs Python processes: the
auth commands and the hook); the round waits until the agent counts them all as
registered (the guard registers each connection) and every session's `sleep` runs (so
the lock never lands while a shell is still starting).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lockd.bench.procs import Reaper
from lockd.bench.report import Result, latency_summary
from lockd.bench.scenarios.common import Common, start_auth
from lockd.bench.sshd import LOGIN, ThrowawaySSHD, why_no_sshd
from lockd.client import AgentClient, AgentStatus
from lockd.domain.errors import LockdError
from lockd.domain.lock import Lock, LockTarget
from lockd.pki import new_key
from lockd.pki_openssh import SSHUserCA, SSHUserIdentity

START_BATCH = 10  # sessions connecting at once
REGISTER_TIMEOUT = 300.0
END_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class SSHParams:
    sessions: int = 50
    rounds: int = 3


def _agent_config(directory: Path, auth_address: str, ca_file: Path, name: str) -> Path:
    """The agent's config; the guard reads a copy of it that logs at info (`guard_end`)."""
    config = directory / f"{name}.yaml"
    config.write_text(
        f"""\
cluster_name: bench.lockd
data_dir: {directory / "agent"}
log: {{format: json, level: {"info" if name == "guard" else "warning"}}}
audit: {{sink: {directory / "audit.log"}}}
agent_service:
  enabled: true
  insecure: true
  auth_servers: ["{auth_address}"]
  socket: {directory / "agent.sock"}
  metrics_addr: ""
  ssh: {{user_ca_keys: {ca_file}}}
""",
        encoding="utf-8",
    )
    return config


async def _until(
    socket: Path, done: Callable[[AgentStatus], bool], what: str, within: float
) -> None:
    """Poll the agent's status until `done` says so."""
    deadline = time.monotonic() + within
    while True:
        try:
            async with AgentClient.connect(socket) as agent:
                if done(await agent.status()):
                    return
        except LockdError:
            pass  # not serving yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def _at_least(count: int) -> Callable[[AgentStatus], bool]:
    return lambda status: status.sessions >= count


def _sleeping(duration: str) -> int:
    """How many `sleep DURATION` processes run."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            count += argv[:2] == [b"sleep", duration.encode()]
    return count


async def _all_sleeping(duration: str, count: int) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT
    while (running := await asyncio.to_thread(_sleeping, duration)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {running} of {count} SSH sessions started their command")
        await asyncio.sleep(0.2)


async def _client(sshd: ThrowawaySSHD, key: Path, duration: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "ssh",
        *sshd.ssh_options(key),
        f"{LOGIN}@127.0.0.1",
        f"sleep {duration}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _exit_time(process: asyncio.subprocess.Process) -> float:
    await process.wait()
    return time.time()


def _guard_ends(log: Path, field: str) -> list[float]:
    """A duration of the guard's "connection ended" records, in seconds."""
    ends = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # not a log record (a traceback line, say)
        if isinstance(record, dict) and record.get("event") == "connection ended":
            ends.append(float(record[field]) / 1000)
    return ends


async def ssh(reaper: Reaper, params: SSHParams, common: Common) -> Result:
    missing = why_no_sshd()
    if missing is not None:
        raise RuntimeError(missing)
    result = Result("ssh", {"sessions": params.sessions, "rounds": params.rounds})
    directory = reaper.workdir / "ssh"
    directory.mkdir()
    auth = await start_auth(reaper, common)
    sshd: ThrowawaySSHD | None = None
    try:
        ca = SSHUserCA.derived_from(new_key(), "bench.lockd")
        sshd = ThrowawaySSHD(directory, ca, directory / "guard.yaml")
        _agent_config(directory, auth.address, sshd.ca_file, "agent")
        _agent_config(directory, auth.address, sshd.ca_file, "guard")
        with (directory / "agent.log").open("wb") as log:
            launch = [sys.executable, "-m", "lockd.bench.launch", "lockd", "agent"]
            reaper.popen(
                [*launch, "--config", str(directory / "agent.yaml")], stdout=log, stderr=log
            )
        socket = directory / "agent.sock"
        await _until(socket, lambda status: status.state == "synced", "the agent", 60.0)
        await asyncio.to_thread(sshd.start)
        after_lock: list[float] = []
        last: list[float] = []
        for round_number in range(params.rounds):
            user = f"ssh-bench-{round_number}"
            key = await asyncio.to_thread(sshd.user_key, user, SSHUserIdentity(user))
            duration = f"3600.{uuid.uuid4().int % 10**9}"  # names this round's sessions
            clients = []
            for start in range(0, params.sessions, START_BATCH):
                batch = min(START_BATCH, params.sessions - start)
                clients.extend([await _client(sshd, key, duration) for _ in range(batch)])
                count = start + batch
                await _until(
                    socket,
                    _at_least(count),
                    "sessions",
                    REGISTER_TIMEOUT,
                )
            await _all_sleeping(duration, params.sessions)
            exits = [asyncio.ensure_future(_exit_time(client)) for client in clients]
            name = str(uuid.uuid4())
            created = time.time()
            await auth.admin().create_lock(Lock(name, LockTarget(user=user)))
            async with asyncio.timeout(END_TIMEOUT):
                ended = await asyncio.gather(*exits)
            after_lock.extend(end - created for end in ended)
            last.append(max(ended) - created)
            await auth.admin().delete_lock(name)
            await _until(socket, lambda status: status.sessions == 0, "no session", END_TIMEOUT)
        result.update(latency_summary("guard_kill", _guard_ends(sshd.guard_log, "killed_ms")))
        result.update(latency_summary("guard_end", _guard_ends(sshd.guard_log, "took_ms")))
        result.update(latency_summary("lock_to_disconnect", after_lock))
        result.update(latency_summary("create_to_last_disconnect", last))
        result.notes.append(
            "guard_kill: the guard reading the termination -> the connection's processes "
            "killed (message delivered); guard_end: -> the connection's sshd gone; "
            "lock_to_disconnect: CreateLock called -> each ssh client exiting; "
            "create_to_last_disconnect: CreateLock called -> the round's last client exiting"
        )
    finally:
        if sshd is not None:
            await asyncio.to_thread(sshd.stop)
        await auth.close()
    return result

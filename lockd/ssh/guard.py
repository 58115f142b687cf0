"""`lockd ssh-session guard`: every SSH connection of the node, checked when it
authenticates and ended when a lock hits it, by one long-lived root process.

The ForceCommand hook alone misses connections that open no session (`ssh -N -L`,
`-D`, `-R`: sshd never runs it) and runs as the user, who can stop it. sshd runs its
auth commands for *every* connection, as root, from the connection's privileged
process (`lockd.ssh.connection_processes`), so:

1. `lockd ssh-session auth-principals|auth-keys` (sshd's AuthorizedPrincipalsCommand /
   AuthorizedKeysCommand) sends the login and the offered key or certificate to the
   guard's root-only socket. The guard finds the connection from the command's parent
   (SO_PEERCRED), works out who it is (the certificate's user, roles, MFA device and
   trusted device; a plain key's mapped user), and registers it on its one session
   channel to the agent: one registration per connection, whatever its channels. sshd
   runs the commands twice per login (the key is queried, then signed); the second
   call finds the connection registered.
2. Allowed: the answer lets the key in as usual. Refused: the key is let in with
   `restrict` (`lockd.ssh.authorized`), the guard waits for the connection's first
   session, stops it, writes the reason into it and ends the connection; a connection
   that opens no session within `REFUSED_WAIT` of logging in (port forwarding only) is
   ended then.
3. A termination from the agent (a lock, strict mode with a view that cannot be
   trusted, or the agent lost for a strict connection) ends the connection: every
   process below its sshd server is stopped, the message written to each session's
   terminal or stderr, then everything is killed (SIGKILL, which nothing can ignore)
   and the connection's sshd processes end. All hit connections end concurrently.
4. The connection's monitor exiting (pidfd) unregisters it.

The /proc reads and signals of ending a connection run on the event loop: procfs is in
memory, and they take microseconds. An unreachable agent refuses new connections
(`agent_service.ssh.agent_unreachable: refuse`) with the lock-out message, or lets
them in unsupervised (`allow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import pwd
import socket
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from lockd.client import (
    AgentClient,
    Session,
    SessionMetadata,
    SessionProtocol,
    SessionRequest,
)
from lockd.config.model import SSHHookConfig
from lockd.domain.errors import LockdError, UnavailableError
from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.ssh import authorized, connection_processes, notice, processes
from lockd.ssh.connection_processes import Monitor
from lockd.ssh.session_identity import CERT_TYPE_SUFFIX, certificate_identity, mapped_identity

_log = structlog.get_logger("lockd.ssh.guard")

SIDECAR_NAME = "lockd ssh-guard"  # how the agent's audit names the guard
REFUSED_WAIT = 3.0  # seconds a refused connection may take to open its first session
AGENT_TIMEOUT = 1.0  # the agent is local: a login does not wait long for it
GUARD_NICE = -10  # ahead of the users' processes, also between batches
WATCH_INTERVAL = 0.005  # how often a refused connection is looked at meanwhile
MONITOR_EXIT = 2.0  # seconds the monitor gets to finish after SIGTERM
REQUEST_LIMIT = 64 * 1024  # a certificate is a few hundred bytes
CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
KINDS = ("principals", "keys")


@dataclass(frozen=True, slots=True)
class GuardSettings:
    listen: Path  # the guard's Unix socket (root only)
    agent_socket: Path
    ssh: SSHHookConfig
    authorized_keys: tuple[str, ...]  # AuthorizedKeysFile patterns (%h, %u)


@dataclass(eq=False)
class Tracked:
    """One connection the guard knows about."""

    monitor: Monitor
    pidfd: int
    identity: Identity | None = None
    session: Session | None = None
    refused: str = ""  # the reason, while the connection is refused
    ending: bool = False
    reason: str = ""  # why it is being ended
    ending_since: float = 0.0  # loop time the guard learnt it must end the connection
    killed_at: float = 0.0  # loop time its processes were killed
    watcher: asyncio.Task[None] | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class Guard:
    def __init__(self, settings: GuardSettings, agent: AgentClient) -> None:
        self.settings = settings
        self.agent = agent
        self.connections: dict[str, Tracked] = {}
        self._ids = itertools.count(1)
        self._pending: list[Tracked] = []  # to end in the next batch
        self._batches: set[asyncio.Task[None]] = set()
        self._host = socket.gethostname()

    # -- the auth commands ----------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One auth command: a JSON request line, a JSON answer line."""
        try:
            peer = writer.get_extra_info("socket")
            pid, _, _ = CREDENTIALS.unpack(
                peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CREDENTIALS.size)
            )
            request = json.loads(await reader.readline())
            lines = await self.answer(
                str(request["kind"]),
                str(request["login"]),
                str(request["key_type"]),
                str(request["key"]),
                pid,
            )
            answer: dict[str, object] = {"lines": lines}
        except (ValueError, KeyError, TypeError) as error:
            answer = {"lines": [], "error": f"a bad request: {error}"}
        writer.write(json.dumps(answer).encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def answer(
        self, kind: str, login: str, key_type: str, key: str, auth_command: int
    ) -> list[str]:
        """The lines the auth command prints: none lets this key in nowhere."""
        if kind not in KINDS:
            raise ValueError(f'kind "{kind}" is not one of {", ".join(KINDS)}')
        try:
            login_uid = pwd.getpwnam(login).pw_uid
        except KeyError:
            return []
        monitor = connection_processes.monitor_of(auth_command, login_uid)
        if monitor is None:
            _log.warning("auth request not from an sshd monitor", pid=auth_command)
            return []
        # Files (the CA keys, authorized_keys) are read off the loop.
        lines, identity, refusal = await asyncio.to_thread(
            self._credential, kind, login, key_type, key
        )
        if not lines:
            return []
        tracked = self._track(monitor)
        if tracked is None:
            return []  # the connection ended meanwhile
        if identity is not None:
            refusal = await self._register(tracked, identity, login)
        if not refusal:
            tracked.refused = ""
            return lines
        if not tracked.refused:
            _log.info("connection refused", monitor=monitor.pid, login=login, reason=refusal)
        tracked.refused = refusal
        if tracked.watcher is None:
            tracked.watcher = asyncio.ensure_future(self._refused(tracked))
        if kind == "keys":
            return authorized.restricted(lines, key_type, key)
        return authorized.restricted(lines)

    def _credential(
        self, kind: str, login: str, key_type: str, key: str
    ) -> tuple[list[str], Identity | None, str]:
        """The allowed lines for the key, who it is, or why lockd cannot tell."""
        is_certificate = key_type.endswith(CERT_TYPE_SUFFIX)
        if kind == "principals":
            if not is_certificate:
                return [], None, ""
            try:
                identity = certificate_identity(
                    login,
                    f"{key_type} {key}".encode(),
                    self.settings.ssh.user_ca_keys,
                    datetime.now(UTC),
                )
            except LockdError as error:
                return (
                    authorized.principal_lines(login),
                    None,
                    f"lockd cannot tell who this session is: {error}",
                )
            return authorized.principal_lines(login), identity, ""
        if is_certificate:
            return [], None, ""  # cert-authority lines are not supported under the guard
        lines = authorized.authorized_key_lines(self.settings.authorized_keys, login, key_type, key)
        return lines, mapped_identity(login, self.settings.ssh.logins), ""

    def _track(self, monitor: Monitor) -> Tracked | None:
        tracked = self.connections.get(monitor.key)
        if tracked is not None:
            return tracked
        try:
            pidfd = os.pidfd_open(monitor.pid)
        except ProcessLookupError:
            return None
        if not connection_processes.alive(monitor):  # the pid was reused before the pidfd
            os.close(pidfd)
            return None
        tracked = Tracked(monitor, pidfd)
        self.connections[monitor.key] = tracked
        asyncio.get_running_loop().add_reader(pidfd, self._gone, tracked)
        return tracked

    async def _register(self, tracked: Tracked, identity: Identity, login: str) -> str:
        """Register the connection as `identity` (again only if another key changed who it
        is); "" when allowed, else the reason."""
        if tracked.identity == identity and (tracked.session is not None or tracked.refused):
            return tracked.refused
        if tracked.session is not None:
            await tracked.session.close()
            tracked.session = None
        tracked.identity = identity
        metadata = SessionMetadata(
            protocol=SessionProtocol.SSH,
            remote_address=connection_processes.remote_address(tracked.monitor),
            target_resource=f"{login}@{self._host}",
        )
        request = SessionRequest(identity, metadata, f"{tracked.monitor.key}.{next(self._ids)}")
        try:
            (session,) = await self.agent.open_sessions([request])
        except UnavailableError as error:
            if self.settings.ssh.agent_unreachable == "allow":
                _log.warning("agent unreachable: connection let in unsupervised", error=str(error))
                return ""
            return STRICT_LOCKOUT_MESSAGE
        if not session.decision.allowed:
            return session.decision.reason
        if tracked.gone.is_set():  # the connection ended while it was being registered
            await session.close()
            return ""
        tracked.session = session
        session.on_terminated(lambda termination: self.end(tracked, termination.reason))
        return ""

    # -- ending connections ---------------------------------------------------------

    def end(self, tracked: Tracked, reason: str) -> None:
        """End the connection with `reason` (once). Every connection one lock hits (one
        SessionsTerminated: its callbacks run in one go) is ended in one batch."""
        if tracked.ending or tracked.gone.is_set():
            return
        tracked.ending = True
        tracked.reason = reason
        tracked.ending_since = asyncio.get_running_loop().time()
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._start_batch)
        self._pending.append(tracked)

    def _start_batch(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._end_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _end_batch(self, batch: list[Tracked]) -> None:
        """Stop them all, write every message, wait until sshd took them (one poll for
        all), then kill them all. No second walk for processes that escaped: `freeze`
        walked each tree until it found no new process, and stopped processes cannot fork."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        outputs = []
        try:
            with processes.uninterrupted():
                stopped = [
                    (tracked, *connection_processes.freeze(tracked.monitor)) for tracked in batch
                ]
                for tracked in batch:
                    for leader in connection_processes.session_leaders(tracked.monitor):
                        fd = notice.open_stderr(leader)
                        if fd is not None:
                            outputs.append(fd)
                            notice.say(tracked.reason, fd)
            written = loop.time()
            await notice.drained(outputs)
        finally:
            for fd in outputs:
                os.close(fd)
        drained = loop.time()
        with processes.uninterrupted():
            for tracked, server, frozen in stopped:
                connection_processes.kill(tracked.monitor, server, frozen)
                tracked.killed_at = loop.time()
        _log.info(
            "connections ending",
            connections=len(batch),
            stop_write_ms=round((written - began) * 1000, 3),
            drain_ms=round((drained - written) * 1000, 3),
            kill_ms=round((loop.time() - drained) * 1000, 3),
        )
        deadline = loop.time() + MONITOR_EXIT
        for tracked in batch:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await tracked.gone.wait()
            if not tracked.gone.is_set():
                _log.warning("sshd monitor did not exit: killed", pid=tracked.monitor.pid)
                connection_processes.kill_monitor(tracked.monitor)

    async def _refused(self, tracked: Tracked) -> None:
        """A refused connection: end it as soon as it opens a session (the message goes
        there), or after REFUSED_WAIT without one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REFUSED_WAIT
        while tracked.refused and not tracked.gone.is_set():
            if connection_processes.authenticating(tracked.monitor):
                # sshd may still be padding its answer (it delays a slow attempt by up
                # to twice the time it took): the wait starts once it logged in.
                deadline = loop.time() + REFUSED_WAIT
            elif connection_processes.session_leaders(tracked.monitor) or loop.time() > deadline:
                self.end(tracked, tracked.refused)
                return
            await asyncio.sleep(WATCH_INTERVAL)
        tracked.watcher = None

    def _gone(self, tracked: Tracked) -> None:
        """The monitor exited: the connection is over."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(tracked.pidfd)
        os.close(tracked.pidfd)
        tracked.gone.set()
        self.connections.pop(tracked.monitor.key, None)
        if tracked.ending:  # `lockd bench ssh` reads this line
            _log.info(
                "connection ended",
                monitor=tracked.monitor.pid,
                took_ms=round((loop.time() - tracked.ending_since) * 1000, 3),
                killed_ms=round((tracked.killed_at - tracked.ending_since) * 1000, 3),
            )
        if tracked.watcher is not None:
            tracked.watcher.cancel()
        if tracked.session is not None and not tracked.session.is_terminated():
            self.agent.sessions.unregister([tracked.session])

    async def close(self) -> None:
        for tracked in list(self.connections.values()):
            self._gone(tracked)


async def serve(settings: GuardSettings, stop: asyncio.Event) -> None:
    """Run the guard until `stop` is set."""
    _claim(settings.listen)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, GUARD_NICE)
    except PermissionError:
        _log.warning("cannot raise the guard's priority (not root?)", nice=GUARD_NICE)
    async with AgentClient.connect(
        settings.agent_socket, sidecar=SIDECAR_NAME, connect_timeout=AGENT_TIMEOUT
    ) as agent:
        agent.sessions.start()  # connect now: the first login should not wait for it
        guard = Guard(settings, agent)
        old_umask = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(
                guard.handle, path=str(settings.listen), limit=REQUEST_LIMIT
            )
        finally:
            os.umask(old_umask)
        _log.info("ssh guard serving", socket=str(settings.listen))
        try:
            async with server:
                await stop.wait()
        finally:
            await guard.close()
            with contextlib.suppress(FileNotFoundError):
                settings.listen.unlink()


def _claim(path: Path) -> None:
    """Take the socket path: refuse while another guard answers on it, replace a stale one."""
    if not path.exists():
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        return
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise UnavailableError(f"another lockd ssh-session guard serves {path}")

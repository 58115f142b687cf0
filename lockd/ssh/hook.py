"""`lockd ssh-session`: one SSH connection, checked and supervised by the node agent.

For every session sshd starts (ForceCommand), the hook
1. works out who the session is (`session_identity`);
2. registers it with the agent: a refusal (a lock, or strict mode on a view that is not
   current) is written to stderr as `ERROR: <reason>`, and the connection is ended
   before the user's program ever runs. An unreachable agent refuses too, unless
   `agent_service.ssh.agent_unreachable` is `allow`;
3. runs what the user asked for (`user_program`) and waits for it or for a termination
   signal from the agent, whichever comes first;
4. on termination: stops every process of the session, writes the reason to the user's
   terminal (or stderr), kills the processes, waits for the text to leave, then ends the
   whole connection by ending its sshd process (`processes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from lockd.client import (
    AgentClient,
    Session,
    SessionDenied,
    SessionMetadata,
    SessionProtocol,
    SessionTermination,
)
from lockd.config.model import SSHHookConfig
from lockd.domain.errors import LockdError, UnavailableError
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE
from lockd.ssh import notice, processes
from lockd.ssh.session_identity import SSHSession, session_of
from lockd.ssh.user_program import (
    FORWARDED_SIGNALS,
    IGNORED_SIGNALS,
    UserProgram,
    exit_status,
    login_entry,
    requested_program,
    start,
)

SIDECAR_NAME = "lockd ssh-session"  # how the agent's audit names this sidecar
EXIT_REFUSED = 1
EXIT_TERMINATED = 255  # what ssh itself exits with when the connection is lost


@dataclass(frozen=True, slots=True)
class HookSettings:
    socket: Path  # the agent's Unix socket
    ssh: SSHHookConfig


def refuse(reason: str, detail: str = "") -> int:
    """Refuse the session: say why, then end the connection too, so that nothing of it
    (a port forward, another multiplexed session) outlives the refusal."""
    notice.say(reason)
    if detail:
        with contextlib.suppress(OSError):
            os.write(2, f"lockd: {detail}\n".encode())
    _end_connection()
    return EXIT_REFUSED


async def run(settings: HookSettings) -> int:
    processes.become_subreaper()
    entry = login_entry()
    program = requested_program(entry, os.environ.get("SSH_ORIGINAL_COMMAND"))
    try:
        session = session_of(
            entry.pw_name, os.environ, settings.ssh.user_ca_keys, settings.ssh.logins, _now()
        )
    except LockdError as error:
        return refuse(f"lockd cannot tell who this session is: {error}")
    async with contextlib.AsyncExitStack() as stack:
        client = AgentClient.connect(settings.socket, sidecar=SIDECAR_NAME)
        agent = await stack.enter_async_context(client)
        try:
            registered = await stack.enter_async_context(
                agent.open_session(session.identity, metadata=_metadata(session, entry.pw_name))
            )
        except SessionDenied as denied:
            return refuse(denied.decision.reason)
        except UnavailableError as error:
            return _without_agent(settings, program, error)
        return await Supervisor(session, program).run(registered)
    raise AssertionError("unreachable")  # the stack never swallows exceptions


async def check_account(settings: HookSettings) -> int:
    """`--pam-account`: the PAM account check (pam_exec, as root, before any session).

    Asks the agent about `PAM_USER` (and the certificate in `SSH_AUTH_INFO_0`, which
    sshd passes to PAM with ExposeAuthInfo); exit 0 allows the login. Nothing is
    registered: the ForceCommand hook registers and supervises the session itself.
    """
    login = os.environ.get("PAM_USER", "")
    if not login:
        print("ERROR: PAM_USER is not set (run it from pam_exec)", file=sys.stderr)
        return EXIT_REFUSED
    try:
        session = session_of(
            login, os.environ, settings.ssh.user_ca_keys, settings.ssh.logins, _now()
        )
        async with AgentClient.connect(settings.socket, sidecar=SIDECAR_NAME) as agent:
            decision = await agent.check_access(session.identity)
    except UnavailableError as error:
        if settings.ssh.agent_unreachable == "allow":
            return 0
        print(f"ERROR: {STRICT_LOCKOUT_MESSAGE} ({error})", file=sys.stderr)
        return EXIT_REFUSED
    except LockdError as error:
        print(f"ERROR: lockd cannot tell who this session is: {error}", file=sys.stderr)
        return EXIT_REFUSED
    if not decision.allowed:
        print(f"ERROR: {decision.reason}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _metadata(session: SSHSession, login: str) -> SessionMetadata:
    """What the agent's audit says about the session besides its identity."""
    return SessionMetadata(
        protocol=SessionProtocol.SSH,
        remote_address=session.remote_address,
        target_resource=f"{login}@{socket.gethostname()}",
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _without_agent(settings: HookSettings, program: UserProgram, error: LockdError) -> int:
    if settings.ssh.agent_unreachable == "allow":
        # Fail open, as configured: the program replaces the hook, unsupervised.
        os.execv(program.executable, list(program.argv))
    return refuse(STRICT_LOCKOUT_MESSAGE, f"the node agent is unreachable: {error}")


class Supervisor:
    """Runs the user's program until it exits or the agent ends the session."""

    def __init__(self, session: SSHSession, program: UserProgram) -> None:
        self.session = session
        self.program = program

    async def run(self, registered: Session) -> int:
        loop = asyncio.get_running_loop()
        child = start(self.program)
        exited: asyncio.Future[None] = loop.create_future()
        pidfd = os.pidfd_open(child.pid)
        loop.add_reader(pidfd, _set_once, exited)
        for signum in FORWARDED_SIGNALS:
            loop.add_signal_handler(signum, _forward, child.pid, signum)
        for signum in IGNORED_SIGNALS:
            loop.add_signal_handler(signum, lambda: None)
        ended: asyncio.Task[SessionTermination] = asyncio.ensure_future(registered.terminated())
        try:
            either: list[asyncio.Future[Any]] = [exited, ended]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if exited.done():
                return exit_status(child.wait())
            # A lock, or (strict sessions) a view or agent that cannot be trusted now.
            return self.terminate(ended.result().reason)
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            ended.cancel()

    def terminate(self, reason: str) -> NoReturn:
        """End everything of this session and the connection itself, after saying why."""
        me = os.getpid()
        # Frozen first: nothing prints over the notice, nothing forks away.
        frozen = processes.freeze_tree(me)
        _take_terminal()
        notice.say(reason)
        processes.kill_tree(me, frozen)
        processes.reap_orphans()
        _end_connection()
        # Done: exit at once rather than tear Python and gRPC down, which would compete
        # for the CPU with the connection's own teardown (many sessions end together).
        # The agent sees the channel close and forgets the session.
        os._exit(EXIT_TERMINATED)


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _end_connection() -> None:
    """Once what was written has left, end the connection's sshd process (if any)."""
    notice.drain(2)
    sshd = processes.connection_process()
    if sshd is not None:
        processes.end_connection(sshd)


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _take_terminal() -> None:
    """Make the hook the terminal's foreground again (a shell may have taken it), so the
    notice is written even where `stty tostop` is set. SIGTTOU is blocked meanwhile:
    a background process may then change the foreground without being stopped."""
    if not os.isatty(2):
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(2, os.getpgrp())
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTTOU})

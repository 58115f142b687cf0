"""`lockd ssh-session …`: the command lines of the SSH integration (docs/ssh.md).

- `lockd ssh-session [--config FILE] [--pam-account | --guarded]`: the session hook,
  sshd's ForceCommand (alone, or `--guarded` under the guard).
- `lockd ssh-session guard [--config FILE] [--listen SOCKET] [--authorized-keys PATTERN]`:
  the root-owned guard of every connection of the node.
- `lockd ssh-session auth-principals|auth-keys [--socket SOCKET] %u %t %k`: sshd's
  auth commands under the guard.

Each imports only what it needs (the auth commands only the standard library): sshd
starts the hook and the auth commands for every login.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lockd.config.model import Config

DEFAULT_CONFIG = Path("/etc/lockd.yaml")
CONFIG_ENV = "LOCKD_SSH_CONFIG"
EXIT_REFUSED = 1

DESCRIPTION = """\
Check an SSH session with this node's lockd agent and run it under the agent's watch.
sshd runs it as its ForceCommand (see docs/ssh.md); it is not meant to be run by hand.
It reads agent_service.socket and agent_service.ssh from the config."""

GUARD_DESCRIPTION = """\
Check every SSH connection of this node when it authenticates and end it when a lock
hits it. Runs as root next to sshd, which asks it through `lockd ssh-session
auth-principals` / `auth-keys` (docs/ssh.md). Reads agent_service.socket and
agent_service.ssh from the config."""


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)),
        help=f"YAML config file (default ${CONFIG_ENV} or {DEFAULT_CONFIG})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockd ssh-session", description=DESCRIPTION)
    _config_argument(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--pam-account",
        action="store_true",
        help="check PAM_USER with the agent and exit 0 (allowed) or 1 (refused), for "
        "pam_exec in sshd's PAM account stack (docs/ssh.md)",
    )
    mode.add_argument(
        "--guarded",
        action="store_true",
        help="`lockd ssh-session guard` checks and ends this connection: only run the "
        "session (its processes kept in one tree); the config is not read",
    )
    return parser


def build_guard_parser() -> argparse.ArgumentParser:
    from lockd.ssh.auth_command import DEFAULT_SOCKET

    parser = argparse.ArgumentParser(prog="lockd ssh-session guard", description=GUARD_DESCRIPTION)
    _config_argument(parser)
    parser.add_argument(
        "--listen",
        type=Path,
        default=Path(DEFAULT_SOCKET),
        help=f"the guard's Unix socket, mode 0600 (default {DEFAULT_SOCKET})",
    )
    parser.add_argument(
        "--authorized-keys",
        action="append",
        metavar="PATTERN",
        help="where plain keys are authorized, with sshd's AuthorizedKeysFile tokens %%h "
        "and %%u; may be given more than once (default %%h/.ssh/authorized_keys)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    from lockd.ssh.auth_command import KINDS

    if argv[:1] and argv[0] in KINDS:
        from lockd.ssh.auth_command import main as auth_command

        return auth_command(argv[0], argv[1:])
    if argv[:1] == ["guard"]:
        return _guard(argv[1:])
    args = build_parser().parse_args(argv)
    if args.guarded:
        from lockd.ssh.user_program import login_entry, requested_program, run_in_tree

        program = requested_program(login_entry(), os.environ.get("SSH_ORIGINAL_COMMAND"))
        return run_in_tree(program)
    config = _load(args.config)
    if config is None:
        return EXIT_REFUSED
    from lockd.ssh.hook import HookSettings, check_account, run

    settings = HookSettings(socket=config.agent_service.socket, ssh=config.agent_service.ssh)
    return asyncio.run(check_account(settings) if args.pam_account else run(settings))


def _guard(argv: Sequence[str]) -> int:
    args = build_guard_parser().parse_args(argv)
    config = _load(args.config)
    if config is None:
        return EXIT_REFUSED
    from lockd.domain.errors import LockdError
    from lockd.obs.logging import configure_logging
    from lockd.ssh.guard import GuardSettings, serve

    configure_logging(config.log.format, config.log.level)
    settings = GuardSettings(
        listen=args.listen,
        agent_socket=config.agent_service.socket,
        ssh=config.agent_service.ssh,
        authorized_keys=tuple(args.authorized_keys or ["%h/.ssh/authorized_keys"]),
    )

    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, stop)

    try:
        asyncio.run(until_signalled())
    except LockdError as error:
        print(f"ERROR: lockd ssh-session guard: {error}", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _load(path: Path) -> Config | None:
    from lockd.config import load_config
    from lockd.domain.errors import LockdError

    try:
        return load_config(path)
    except LockdError as error:
        print(f"ERROR: lockd ssh-session: {error}", file=sys.stderr)
        return None

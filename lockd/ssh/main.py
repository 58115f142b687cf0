"""`lockd ssh-session [--config FILE]`: the command line of the SSH session hook."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lockd.config import load_config
from lockd.domain.errors import LockdError
from lockd.ssh.hook import EXIT_REFUSED, HookSettings, check_account, run

DEFAULT_CONFIG = Path("/etc/lockd.yaml")
CONFIG_ENV = "LOCKD_SSH_CONFIG"

DESCRIPTION = """\
Check an SSH session with this node's lockd agent and run it under the agent's watch.
sshd runs it as its ForceCommand (see docs/ssh.md); it is not meant to be run by hand.
It reads agent_service.socket and agent_service.ssh from the config."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockd ssh-session", description=DESCRIPTION)
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)),
        help=f"YAML config file (default ${CONFIG_ENV} or {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--pam-account",
        action="store_true",
        help="check PAM_USER with the agent and exit 0 (allowed) or 1 (refused), for "
        "pam_exec in sshd's PAM account stack (docs/ssh.md)",
    )
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except LockdError as error:
        print(f"ERROR: lockd ssh-session: {error}", file=sys.stderr)
        return EXIT_REFUSED
    settings = HookSettings(socket=config.agent_service.socket, ssh=config.agent_service.ssh)
    return asyncio.run(check_account(settings) if args.pam_account else run(settings))

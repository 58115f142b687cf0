"""`lockctl`: parse, check locally, connect (admin socket or mTLS), run, map errors to exits.

Exit codes: 0 ok, 1 operational or remote error, 2 usage or validation error. Errors go
to stderr as `ERROR: <message>`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from lockd import __version__
from lockd.cli import connection
from lockd.cli.commands import (
    auth,
    completion,
    create,
    get,
    lock_command,
    rm,
    status,
    tokens,
    unlock,
    users,
    version,
)
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_FAILURE, EXIT_INTERRUPTED, exit_code_for
from lockd.cli.parser import Parser, Runner
from lockd.domain.errors import LockdError

DESCRIPTION = """\
lockctl administers lockd, Teleport-style session and identity locking: lock a user,
role, device or server out of every agent at once, manage roles, users and the
cluster's locking mode, and issue identities and agent join tokens.

On the auth host, lockctl reads the auth server's config (-c FILE, $LOCKD_CONFIG, else
/etc/lockd.yaml) and talks to its admin socket with full rights. From anywhere else,
give --auth-server HOST:PORT (the auth server's listen_addr) and --identity FILE (an
identity file from `lockctl auth sign` on the auth host): lockctl then talks mutual TLS
and acts as that user, with the roles the user had when the file was signed.

Results go to stdout; progress, notes and errors to stderr.
Exit codes: 0 ok, 1 operational or remote error, 2 usage or validation error."""

EXAMPLES = """\
examples:
  lockctl -c /etc/lockd.yaml status
  lockctl lock --user=foo@example.com --message="Suspicious activity." --ttl=10h
  lockctl get locks --format=text
  lockctl rm locks/dc7cee9d-fe5e-4534-a90d-db770f0234a1
  lockctl unlock --user=foo@example.com
  lockctl create -f locksmith.yaml
  lockctl users update alice --set-roles access,locksmith
  lockctl auth sign --user=alice --ttl=12h --out=alice.pem
  lockctl --auth-server=auth.example.com:3025 --identity=alice.pem get locks
  lockctl tokens add --type=agent --ttl=1h

Run `lockctl COMMAND --help` for a command's flags and more examples."""


def build_parser() -> Parser:
    parser = Parser(
        prog="lockctl",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lockctl {__version__}")
    connection.add_connection_flags(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        lock_command,
        unlock,
        get,
        rm,
        create,
        users,
        status,
        auth,
        tokens,
        version,
        completion,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    console = Console()
    parser = build_parser()
    args = parser.parse_args(argv)
    local = getattr(args, "local", None)
    if local is not None:  # answered here, no server needed (version, completion)
        return int(local(args, parser, console))
    try:
        runner: Runner = args.prepare(args)
        endpoint = connection.resolve(args)
        for note in connection.notes(endpoint):
            console.note(note)
        timeout = connection.call_timeout(args)
        return asyncio.run(_run(endpoint, runner, console, timeout))
    except LockdError as error:
        console.error(str(error))
        return exit_code_for(error)
    except KeyboardInterrupt:
        console.note("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `lockctl get locks | head`
        _silence_stdout()
        return EXIT_FAILURE


async def _run(
    endpoint: connection.Endpoint, runner: Runner, console: Console, call_deadline: float
) -> int:
    async with connection.connect(endpoint, call_deadline) as client:
        return await runner(client, console)


def _silence_stdout() -> None:
    """After a broken pipe, keep Python from failing again when it flushes stdout."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())

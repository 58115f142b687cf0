"""`lockctl version`: this lockctl's version, without contacting a server.

The auth server's version is in `lockctl status`.
"""

from __future__ import annotations

import argparse
import platform

from lockd import __version__
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK
from lockd.cli.parser import Parser, Subcommands, add_command


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "version",
        summary="print lockctl's version (the server's: lockctl status)",
        description="Print lockctl's version and Python's, without contacting a server.",
        examples="lockctl version",
    )
    parser.set_defaults(local=run)


def run(args: argparse.Namespace, root: Parser, console: Console) -> int:
    console.result(f"lockctl {__version__} (Python {platform.python_version()})")
    return EXIT_OK

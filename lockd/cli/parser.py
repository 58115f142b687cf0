"""The argparse pieces every command shares: the parser class and `add_command`.

Usage errors print the usage line and `ERROR: <reason>` on stderr and exit 2, like every
other lockctl error. Each command's help ends with examples (its epilog).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeAlias

from lockd.cli.connection import add_connection_flags
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_USAGE
from lockd.client import AuthClient

# What a command's `prepare(args)` returns once the arguments are checked: the work to
# do against the server. Preparing never does network IO.
Runner = Callable[[AuthClient, Console], Awaitable[int]]
Prepare = Callable[[argparse.Namespace], Runner]
Subcommands: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"ERROR: {message}\n")


def add_command(
    commands: Subcommands,
    name: str,
    *,
    summary: str,
    description: str,
    examples: str,
    prepare: Prepare | None = None,
) -> Parser:
    """A subcommand with the connection flags and an `Examples:` epilog."""
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + _indent(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_flags(parser, suppress=True)
    if prepare is not None:
        parser.set_defaults(prepare=prepare)
    return parser


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" if line else "\n" for line in text.strip("\n").splitlines())

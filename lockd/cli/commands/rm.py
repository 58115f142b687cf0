"""`lockctl rm`: delete a lock, role or user by reference."""

from __future__ import annotations

import argparse

from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, UsageError
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.refs import parse_ref
from lockd.client import AuthClient
from lockd.domain.lock import quote
from lockd.domain.resources import Kind

EXAMPLES = """
lockctl rm locks/24679348-baff-4987-a2cd-e820ab7f9d2b
lockctl rm lock/24679348-baff-4987-a2cd-e820ab7f9d2b
lockctl rm role/locksmith
lockctl rm user/alice
"""

DESCRIPTION = """\
Delete one resource: lock/<name> (or locks/<name>), role/<name>, user/<name>.
Prints e.g. `lock "<name>" has been deleted`. Deleting a lock allows new sessions and
requests again; sessions it already ended stay ended.
The cluster auth preference cannot be removed: set its locking_mode with create -f."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "rm",
        summary="delete a lock, role or user",
        description=DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare,
    )
    parser.add_argument("ref", metavar="KIND/NAME", help="e.g. lock/<name>")


def prepare(args: argparse.Namespace) -> Runner:
    ref = parse_ref(args.ref, need_name=True)
    if ref.kind is Kind.CLUSTER_AUTH_PREFERENCE:
        raise UsageError(
            "the cluster auth preference cannot be removed; set its locking_mode with "
            "lockctl create -f cap.yaml"
        )
    kind, name = ref.kind, ref.name

    async def run(client: AuthClient, console: Console) -> int:
        if kind is Kind.LOCK:
            await client.delete_lock(name)
        elif kind is Kind.ROLE:
            await client.delete_role(name)
        else:
            await client.delete_user(name)
        console.result(f"{kind} {quote(name)} has been deleted")
        return EXIT_OK

    return run

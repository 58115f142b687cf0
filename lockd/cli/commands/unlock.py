"""`lockctl unlock`: remove the locks whose target is exactly the given flags.

Exactly: `unlock --user=alice` removes `{user: alice}` locks, not `{user: alice,
server_id: X}` (which also hits alice); those are listed in a note so nothing that still
locks the target goes unmentioned. The locks are listed on stdout, then deleted after a
`[y/N]` confirmation on a terminal, or with --yes. Without a terminal and without --yes
lockctl refuses (exit 2). None found: exit 1.
"""

from __future__ import annotations

import argparse

from lockd.cli import tables
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_FAILURE, EXIT_OK, OperationError, UsageError
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.targets import add_target_flags, target_from_args
from lockd.client import AuthClient
from lockd.domain.errors import NotFoundError
from lockd.domain.lock import Lock, LockTarget, quote

EXAMPLES = """
lockctl unlock --user=foo@example.com             # asks before deleting
lockctl unlock --device 9cdfc0ad-64b7-4d9c-9342-50e97f418ba0 --yes
lockctl unlock --user=alice --server-id=363256df-f78a-4d99-803c-bae19da9ede4 --yes
"""

DESCRIPTION = """\
Remove every lock in force whose target is exactly the given target flags (the same
flags as lockctl lock). The locks found are listed on stdout; lockctl then asks
`Delete N lock(s)? [y/N]` on a terminal, or deletes them at once with --yes. When stdin is
not a terminal, --yes is required (exit 2 otherwise). Each deletion prints
`lock "<name>" has been deleted`. No matching lock: exit 1.
Locks that hit the same target together with other fields are not removed, only
listed in a note (remove them with lockctl rm lock/<name>)."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "unlock",
        summary="remove the locks with exactly this target",
        description=DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare,
    )
    add_target_flags(parser.add_argument_group("targets (at least one)"))
    parser.add_argument("--yes", "-y", action="store_true", help="delete without asking")


def exact_and_partial(locks: list[Lock], target: LockTarget) -> tuple[list[Lock], list[Lock]]:
    """Locks with exactly `target`, and other locks that share all of its fields."""
    exact = [lock for lock in locks if lock.target == target]
    partial = [
        lock
        for lock in locks
        if lock.target != target and all(getattr(lock.target, f) == v for f, v in target.pairs())
    ]
    return exact, partial


def prepare(args: argparse.Namespace) -> Runner:
    target = target_from_args(args)
    yes: bool = args.yes

    async def run(client: AuthClient, console: Console) -> int:
        field, value = target.pairs()[0]
        candidates = await client.list_locks(
            in_force_only=True, targets=[LockTarget(**{field: value})]
        )
        exact, partial = exact_and_partial(candidates, target)
        if partial:
            names = ", ".join(f"{lock.name} ({lock.target.describe()})" for lock in partial)
            console.note(
                f"note: {len(partial)} other lock(s) also hit {target.describe()} and stay: "
                f"{names}; remove them with lockctl rm lock/<name>"
            )
        if not exact:
            raise OperationError(f"no lock in force targets exactly {target.describe()}")
        console.data(tables.locks_table(exact))
        if not yes:
            if not console.interactive():
                raise UsageError(
                    f"refusing to delete {len(exact)} lock(s) without confirmation: stdin is "
                    "not a terminal; pass --yes"
                )
            if not console.confirm(f"Delete {len(exact)} lock(s)?"):
                console.note("Aborted; no lock deleted.")
                return EXIT_FAILURE
        for lock in exact:
            try:
                await client.delete_lock(lock.name)
            except NotFoundError:
                console.note(f"note: lock {quote(lock.name)} was already gone")
                continue
            console.result(f"lock {quote(lock.name)} has been deleted")
        return EXIT_OK

    return run

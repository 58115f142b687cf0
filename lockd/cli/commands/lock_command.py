"""`lockctl lock`: create a lock from target flags (and optionally wait for the agents)."""

from __future__ import annotations

import argparse
import time
import uuid

from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, UsageError
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.targets import add_target_flags, target_from_args
from lockd.cli.timeflags import expiry, positive_duration
from lockd.cli.wait import DEFAULT_WAIT, wait_for_agents
from lockd.client import AuthClient
from lockd.domain.errors import ValidationError
from lockd.domain.lock import MAX_MESSAGE_BYTES, Lock

EXAMPLES = """
lockctl lock --user=foo@example.com --message="Suspicious activity." --ttl=10h
lockctl lock --role=contractor --message="All contractor access is disabled for 10h." --ttl=10h
lockctl lock --device 9cdfc0ad-64b7-4d9c-9342-50e97f418ba0 --message="Compromised device" --ttl=48h
lockctl lock --server-id=363256df-f78a-4d99-803c-bae19da9ede4 --expires=2030-08-14T22:27:00Z
# a union: alice anywhere, and anyone on that server
lockctl lock --user=alice --server-id=363256df-f78a-4d99-803c-bae19da9ede4
lockctl lock --user=mallory --wait           # wait (30s) until every connected agent applied it
lockctl lock --user=mallory --wait=5s
"""

DESCRIPTION = f"""\
Create a lock: new sessions and requests matching the target are refused and live
sessions matching it are terminated, on every agent.

Give at least one target flag. Several flags make a union: the lock hits anything that
matches any one of them. Without --ttl or --expires the lock stays in force until it is
removed (lockctl rm lock/<name>, or lockctl unlock with the same target flags).
The lock's name is a fresh UUIDv4, printed on stdout:
  Created a lock with name "<uuid>".

--message is shown to the users who are cut off (at most {MAX_MESSAGE_BYTES} bytes).
--ttl takes Go-style durations (90s, 10h, 1h30m); --expires an RFC3339 time with a zone.
--wait[=TIMEOUT] (default {DEFAULT_WAIT}) then waits until every connected agent has
applied the lock, printing progress on stderr; it exits 1 naming the agents that did not
confirm in time (the lock itself stays created). It reads the cluster status, which
needs list on lock (besides create and update, which every lock needs)."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "lock",
        summary="create a lock on a user, role, device, server ...",
        description=DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare,
    )
    add_target_flags(parser.add_argument_group("targets (at least one)"))
    parser.add_argument("--message", default="", help="why; shown to the users cut off")
    parser.add_argument("--ttl", metavar="DURATION", help="expire after this long (e.g. 10h)")
    parser.add_argument(
        "--expires", metavar="RFC3339", help="expire at this time (e.g. 2030-08-14T22:27:00Z)"
    )
    parser.add_argument(
        "--wait",
        nargs="?",
        const=DEFAULT_WAIT,
        metavar="TIMEOUT",
        help=f"wait until every connected agent applied the lock (default {DEFAULT_WAIT})",
    )


def prepare(args: argparse.Namespace) -> Runner:
    expires = expiry(args.ttl, args.expires)
    target = target_from_args(args)
    wait = positive_duration("--wait", args.wait) if args.wait is not None else None
    lock = Lock(name=str(uuid.uuid4()), target=target, message=args.message, expires=expires)
    try:
        lock.validate()
    except ValidationError as error:
        raise UsageError(str(error)) from None

    async def run(client: AuthClient, console: Console) -> int:
        before = await client.status() if wait is not None else None
        started = time.monotonic()
        created, revision = await client.create_lock(lock, await_ack=wait is not None)
        console.result(f'Created a lock with name "{created.name}".')
        if wait is not None and before is not None:
            await wait_for_agents(
                client, console, before=before, revision=revision, within=wait, started=started
            )
        return EXIT_OK

    return run

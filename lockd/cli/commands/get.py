"""`lockctl get`: print resources as YAML (default), JSON or a text table.

YAML and JSON are the documents `lockctl create -f` reads, so `get` output feeds
`create -f` unchanged.
"""

from __future__ import annotations

import argparse

from lockd.cli import tables
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.refs import SUPPORTED, Ref, parse_ref
from lockd.client import AuthClient
from lockd.document_text import Format, render_documents, render_one
from lockd.domain.lock import Lock
from lockd.domain.resources import Kind, Resource, Role, User, kind_of

FORMATS = ("yaml", "json", "text")

EXAMPLES = """
lockctl get locks                          # every lock in force, as YAML
lockctl get locks --format=text            # a table: ID, Target, Message, Expires
lockctl get lock/dc7cee9d-fe5e-4534-a90d-db770f0234a1 -o json
lockctl get cap                            # the cluster auth preference (locking mode)
lockctl get roles
lockctl get user/alice
lockctl get all > backup.yaml              # cap, roles, users and locks
lockctl get locks -o yaml | lockctl create -f - --force
"""

DESCRIPTION = f"""\
Print resources. REF is a kind, or kind/name for one resource; kinds: {SUPPORTED}.
Plural forms (locks, roles, users) are accepted too.

`get locks` lists the locks in force. There is no --all: the auth server removes a lock
(an EXPIRE event, in the audit log as lock.expired) within about a second of its expiry,
so an expired lock is not kept to be shown.
YAML (the default) and JSON print documents that `lockctl create -f` reads back
unchanged; JSON prints a list for a kind and a single object for kind/name."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "get",
        summary="print locks, roles, users or the cluster auth preference",
        description=DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare,
    )
    parser.add_argument("ref", metavar="REF", help="kind or kind/name, e.g. locks or lock/<name>")
    parser.add_argument(
        "--format", "-o", choices=FORMATS, default="yaml", help="output format (default yaml)"
    )


def prepare(args: argparse.Namespace) -> Runner:
    ref = parse_ref(args.ref)
    fmt: str = args.format

    async def run(client: AuthClient, console: Console) -> int:
        console.data(await fetch_and_render(client, ref, fmt))
        return EXIT_OK

    return run


async def fetch_and_render(client: AuthClient, ref: Ref, fmt: str) -> str:
    if ref.kind is Kind.CLUSTER_AUTH_PREFERENCE:
        cap, effective = await client.get_cluster_auth_preference()
        return tables.cap_table(cap, effective) if fmt == "text" else render_one(cap, Format(fmt))
    if ref.name:
        one = await _get_one(client, ref.kind, ref.name)
        return _render_list([one], fmt) if fmt == "text" else render_one(one, Format(fmt))
    if ref.kind is None:
        cap, effective = await client.get_cluster_auth_preference()
        roles, users, locks = await _roles_users_locks(client)
        if fmt == "text":
            return "\n".join(
                (
                    tables.cap_table(cap, effective),
                    tables.roles_table(roles),
                    tables.users_table(users),
                    tables.locks_table(locks),
                )
            )
        return render_documents([cap, *roles, *users, *locks], Format(fmt))
    return _render_list(await _list(client, ref.kind), fmt, ref.kind)


async def _get_one(client: AuthClient, kind: Kind | None, name: str) -> Resource:
    if kind is Kind.LOCK:
        return await client.get_lock(name)
    if kind is Kind.ROLE:
        return await client.get_role(name)
    return await client.get_user(name)


async def _list(client: AuthClient, kind: Kind) -> list[Resource]:
    if kind is Kind.LOCK:
        return [*await client.list_locks(in_force_only=True)]
    if kind is Kind.ROLE:
        return [*await client.list_roles()]
    return [*await client.list_users()]


async def _roles_users_locks(client: AuthClient) -> tuple[list[Role], list[User], list[Lock]]:
    return (
        await client.list_roles(),
        await client.list_users(),
        await client.list_locks(in_force_only=True),
    )


def _render_list(resources: list[Resource], fmt: str, kind: Kind | None = None) -> str:
    if fmt != "text":
        return render_documents(resources, Format(fmt))
    kind = kind or kind_of(resources[0])
    if kind is Kind.LOCK:
        return tables.locks_table([r for r in resources if isinstance(r, Lock)])
    if kind is Kind.ROLE:
        return tables.roles_table([r for r in resources if isinstance(r, Role)])
    return tables.users_table([r for r in resources if isinstance(r, User)])

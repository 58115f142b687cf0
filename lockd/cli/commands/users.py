"""`lockctl users add|update|ls|rm`: manage users and their roles, as `tctl users` does.

lockd users have no passwords or invitations: `users add` just stores the user.
"""

from __future__ import annotations

import argparse

from lockd.cli.commands.get import FORMATS, fetch_and_render
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, UsageError
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.refs import parse_ref
from lockd.client import AuthClient
from lockd.domain.errors import NotFoundError, ValidationError
from lockd.domain.lock import quote
from lockd.domain.ports import PutMode
from lockd.domain.resources import User

EXAMPLES = """
lockctl users add alice --roles=access,locksmith
lockctl users update alice --set-roles access,locksmith
lockctl users ls
lockctl users rm alice
"""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "users",
        summary="add, update, list and remove users",
        description="Manage users and their roles. Every role named must exist.",
        examples=EXAMPLES,
    )
    users = parser.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    add = add_command(
        users,
        "add",
        summary="add a user",
        description='Add a user with roles. Prints: User "<name>" has been created',
        examples="lockctl users add alice --roles=access,locksmith",
        prepare=prepare_add,
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("--roles", required=True, metavar="ROLES", help="comma-separated roles")
    update = add_command(
        users,
        "update",
        summary="replace a user's roles",
        description="Replace a user's roles. Prints:\n"
        "  User <name> has been updated:\n"
        "  \tNew roles: <roles>\n"
        "Identity files signed before keep the old roles: sign a new one with\n"
        "lockctl auth sign --user=<name> --out=FILE --overwrite.",
        examples='lockctl users update alice --set-roles "access,locksmith"',
        prepare=prepare_update,
    )
    update.add_argument("name", metavar="NAME")
    update.add_argument("--set-roles", required=True, metavar="ROLES", help="comma-separated")
    listing = add_command(
        users,
        "ls",
        summary="list users",
        description="List users and their roles: a table, or documents as `lockctl get "
        "users` prints them (YAML or JSON, which `lockctl create -f` reads back).",
        examples="lockctl users ls\nlockctl users ls --format=json",
        prepare=prepare_ls,
    )
    listing.add_argument(
        "--format", "-o", choices=FORMATS, default="text", help="output format (default text)"
    )
    remove = add_command(
        users,
        "rm",
        summary="remove a user",
        description='Remove a user. Prints: user "<name>" has been deleted',
        examples="lockctl users rm alice",
        prepare=prepare_rm,
    )
    remove.add_argument("name", metavar="NAME")


def parse_roles(flag: str, text: str) -> tuple[str, ...]:
    roles = tuple(role.strip() for role in text.split(",") if role.strip())
    if not roles:
        raise UsageError(f"{flag} needs at least one role, e.g. {flag}=access,locksmith")
    return roles


def _user(name: str, roles: tuple[str, ...]) -> User:
    user = User(name=name, roles=roles)
    try:
        user.validate()
    except ValidationError as error:
        raise UsageError(str(error)) from None
    return user


async def _check_roles_exist(client: AuthClient, roles: tuple[str, ...]) -> None:
    for role in roles:
        await client.get_role(role)  # NotFoundError: role "<name>" not found


def prepare_add(args: argparse.Namespace) -> Runner:
    user = _user(args.name, parse_roles("--roles", args.roles))

    async def run(client: AuthClient, console: Console) -> int:
        await _check_roles_exist(client, user.roles)
        await client.put_user(user, PutMode.CREATE)
        console.result(f"User {quote(user.name)} has been created")
        return EXIT_OK

    return run


def prepare_update(args: argparse.Namespace) -> Runner:
    user = _user(args.name, parse_roles("--set-roles", args.set_roles))

    async def run(client: AuthClient, console: Console) -> int:
        await client.get_user(user.name)  # NotFoundError: user "<name>" not found
        await _check_roles_exist(client, user.roles)
        try:
            await client.put_user(user, PutMode.UPDATE)
        except NotFoundError:
            raise NotFoundError(f"user {quote(user.name)} not found") from None
        console.result(f"User {user.name} has been updated:\n\tNew roles: {','.join(user.roles)}")
        return EXIT_OK

    return run


def prepare_ls(args: argparse.Namespace) -> Runner:
    ref, fmt = parse_ref("users"), str(args.format)

    async def run(client: AuthClient, console: Console) -> int:
        console.data(await fetch_and_render(client, ref, fmt))
        return EXIT_OK

    return run


def prepare_rm(args: argparse.Namespace) -> Runner:
    name = _user(args.name, ()).name

    async def run(client: AuthClient, console: Console) -> int:
        await client.delete_user(name)
        console.result(f"user {quote(name)} has been deleted")
        return EXIT_OK

    return run

"""`lockctl create -f FILE`: create (or with --force update) resources from documents.

A file is applied all or nothing as far as lockctl can know it: every document is
parsed and validated (strict YAML: a duplicate key is an error) before anything is sent,
then checked against the server — without --force no name may exist yet, and every role
a user names must exist or come earlier in the file — and only then applied, in order.
Should a change still fail half-way (another admin raced us, the server went away), the
error says exactly which documents were applied and which were not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable
from datetime import UTC, datetime

from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, UsageError
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.client import AuthClient
from lockd.document_text import parse_documents
from lockd.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    LockdError,
    NotFoundError,
)
from lockd.domain.lock import Lock, quote
from lockd.domain.ports import PutMode
from lockd.domain.resources import ClusterAuthPreference, Resource, Role, User, kind_of
from lockd.domain.timeparse import format_rfc3339

EXAMPLES = """
lockctl create -f locksmith.yaml            # role 'locksmith' has been created
lockctl create -f cap.yaml                  # cluster auth preference has been updated
lockctl create -f lock.yaml --force         # lock "<name>" has been updated (if it existed)
lockctl get all > backup.yaml && lockctl create -f backup.yaml --force
cat locks.yaml | lockctl create -f -
"""

DESCRIPTION = """\
Create resources from YAML documents (separated by ---) or JSON (one object or a list):
kind lock, role, user and cluster_auth_preference, as `lockctl get` prints them.
A resource whose name exists is refused unless --force is given, which updates it.
Note: in tctl, -f means --force; in lockctl, -f names the file (as in kubectl) and
--force is spelled out. `lockctl create FILE` works too.

Prints one line per document:
  lock "<name>" has been created          (or: has been updated, with --force)
  role '<name>' has been created          (or: has been updated)
  user "<name>" has been created          (or: has been updated)
  cluster auth preference has been updated
A lock's created_at and created_by are stamped by the server (the values in the file
are replaced). A lock whose expires is not in the future is refused before anything is
sent."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "create",
        summary="create or update resources from a YAML/JSON file",
        description=DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare,
    )
    parser.add_argument("path", nargs="?", metavar="FILE", help="same as -f FILE")
    parser.add_argument("-f", "--file", metavar="FILE", help='the documents ("-" reads stdin)')
    parser.add_argument("--force", action="store_true", help="update resources that exist")


def prepare(args: argparse.Namespace) -> Runner:
    if args.path and args.file:
        raise UsageError("give the file once: -f FILE or FILE")
    path = args.file or args.path
    if not path:
        raise UsageError("no file: use -f FILE (or -f - for stdin)")
    resources = parse_documents(read_text(path), "<stdin>" if path == "-" else path)
    check_not_expired(resources)
    force: bool = args.force

    async def run(client: AuthClient, console: Console) -> int:
        await check_applicable(client, resources, force)
        applied: list[Resource] = []
        for resource in resources:
            try:
                line = await apply(client, resource, force)
            except LockdError as error:
                if not applied:
                    raise
                raise type(error)(f"{error}\n{_progress(resources, applied)}") from None
            applied.append(resource)
            console.result(line)
        return EXIT_OK

    return run


def _label(resource: Resource) -> str:
    return f"{kind_of(resource).value} {quote(resource.name)}"


def _progress(resources: list[Resource], applied: list[Resource]) -> str:
    rest = resources[len(applied) :]
    return (
        f"applied: {', '.join(_label(r) for r in applied)}; "
        f"not applied: {', '.join(_label(r) for r in rest)}"
    )


async def check_applicable(client: AuthClient, resources: list[Resource], force: bool) -> None:
    """Refuse the whole file before any change: an existing name without --force, a name
    twice in the file, a user whose role neither exists nor comes earlier in the file."""
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    try:
        roles = {role.name for role in await client.list_roles()}
        roles_known = True
    except AccessDeniedError:  # the server still refuses a missing role
        roles, roles_known = set(), False
    for resource in resources:
        key = (kind_of(resource).value, resource.name)
        if key in seen and not isinstance(resource, ClusterAuthPreference):
            problems.append(f"{_label(resource)} is in the file twice")
        seen.add(key)
        if isinstance(resource, Role):
            if not force and roles_known and resource.name in roles:
                problems.append(f"{_label(resource)} already exists")
            roles.add(resource.name)
        elif isinstance(resource, User):
            problems.extend(
                f'role "{role}" not found'
                for role in resource.roles
                if roles_known and role not in roles
            )
            if not force and await _exists(client.get_user(resource.name)):
                problems.append(f"{_label(resource)} already exists")
        elif (
            isinstance(resource, Lock)
            and not force
            and await _exists(client.get_lock(resource.name))
        ):
            problems.append(f"{_label(resource)} already exists")
    if problems:
        error = NotFoundError if all("not found" in p for p in problems) else AlreadyExistsError
        exists = any(problem.endswith("already exists") for problem in problems)
        hint = " (use --force to update existing resources)" if exists else ""
        raise error(f"nothing was applied: {'; '.join(problems)}{hint}")


async def _exists(lookup: Awaitable[object]) -> bool:
    """Whether the lookup finds the resource; a caller who may create but not read it
    learns it from the write itself (access denied to read counts as "not known")."""
    try:
        await lookup
    except (NotFoundError, AccessDeniedError):
        return False
    return True


def read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UsageError(f"cannot read {path}: {reason}") from None


def check_not_expired(resources: list[Resource], now: datetime | None = None) -> None:
    moment = now or datetime.now(UTC)
    for resource in resources:
        expires = resource.expires if isinstance(resource, Lock) else None
        if expires is not None and expires <= moment:
            raise UsageError(
                f"lock {quote(resource.name)} expires {format_rfc3339(expires)},"
                " which is not in the future"
            )


async def apply(client: AuthClient, resource: Resource, force: bool) -> str:
    """Send one resource; the line to print."""
    try:
        match resource:
            case Lock():
                return await _apply_lock(client, resource, force)
            case Role():
                created = await client.put_role(resource, _mode(force))
                return f"role '{resource.name}' has been {_verb(created)}"
            case User():
                created = await client.put_user(resource, _mode(force))
                return f"user {quote(resource.name)} has been {_verb(created)}"
            case ClusterAuthPreference():
                # A locking_mode in the auth server's config wins: the server refuses.
                await client.set_cluster_auth_preference(resource)
                return "cluster auth preference has been updated"
    except AlreadyExistsError as error:
        raise AlreadyExistsError(f"{error}; use --force to update it") from None


async def _apply_lock(client: AuthClient, lock: Lock, force: bool) -> str:
    if force:
        _, _, created = await client.upsert_lock(lock)
    else:
        await client.create_lock(lock)
        created = True
    return f"lock {quote(lock.name)} has been {_verb(created)}"


def _mode(force: bool) -> PutMode:
    return PutMode.UPSERT if force else PutMode.CREATE


def _verb(created: bool) -> str:
    return "created" if created else "updated"

"""The lock target flags shared by `lockctl lock` and `lockctl unlock`.

One flag per target field of SPEC §1 (`--user`, `--mfa-device`, ...). A flag may be
given once; an explicitly empty value (`--user=""`, often an unset shell variable) is
refused rather than silently dropped.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from lockd.cli.exit_codes import UsageError
from lockd.domain.errors import ValidationError
from lockd.domain.lock import EMPTY_TARGET_MESSAGE, TARGET_FIELDS, LockTarget

# (target field, flag, metavar, help); the order is SPEC §1's.
TARGET_FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("user", "--user", "NAME", "a user, by name"),
    ("role", "--role", "NAME", "every user holding this role"),
    ("login", "--login", "LOGIN", "an OS/UNIX login"),
    ("mfa_device", "--mfa-device", "UUID", "an MFA device, by UUID"),
    ("device", "--device", "ID", "a trusted device, by device ID"),
    (
        "server_id",
        "--server-id",
        "UUID",
        "an agent, by server UUID: every session on it, and the agent itself",
    ),
    ("windows_desktop", "--windows-desktop", "NAME", "a Windows desktop, by name"),
    ("access_request", "--access-request", "UUID", "an access request, by UUID"),
    ("bot_instance_id", "--bot-instance-id", "ID", "a bot instance, by ID"),
    ("join_token", "--join-token", "NAME", "a join token, by name"),
)
assert tuple(field for field, *_ in TARGET_FLAGS) == TARGET_FIELDS


class _Once(argparse.Action):
    """Store a flag's value, refusing a second occurrence (`--user a --user b`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} given more than once")
        setattr(namespace, self.dest, values)


def add_target_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    for field, flag, metavar, text in TARGET_FLAGS:
        parser.add_argument(flag, dest=field, metavar=metavar, action=_Once, help=text)


def target_from_args(args: argparse.Namespace) -> LockTarget:
    """The LockTarget the flags describe; UsageError when it is empty or malformed."""
    values: dict[str, str] = {}
    for field, flag, _, _ in TARGET_FLAGS:
        value = getattr(args, field, None)
        if value is None:
            continue
        if value == "":
            raise UsageError(f"{flag} must not be empty")
        values[field] = value
    if not values:
        raise UsageError(EMPTY_TARGET_MESSAGE)
    target = LockTarget(**values)
    try:
        target.validate()
    except ValidationError as error:
        raise UsageError(str(error)) from None
    return target

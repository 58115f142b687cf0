"""Resource references on the command line: `locks`, `lock/<name>`, `cap`, `all` ...

`get` takes a kind with an optional name; `rm` needs a name. Plural and singular kinds
are both accepted (`locks/<name>` is what the Teleport docs show for `tctl rm`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lockd.cli.exit_codes import UsageError
from lockd.domain.errors import ValidationError
from lockd.domain.lock import quote, validate_name
from lockd.domain.resources import CLUSTER_AUTH_PREFERENCE_NAME, Kind

KIND_ALIASES: dict[str, Kind] = {
    "lock": Kind.LOCK,
    "locks": Kind.LOCK,
    "role": Kind.ROLE,
    "roles": Kind.ROLE,
    "user": Kind.USER,
    "users": Kind.USER,
    "cap": Kind.CLUSTER_AUTH_PREFERENCE,
    "cluster_auth_preference": Kind.CLUSTER_AUTH_PREFERENCE,
    "cluster_auth_preferences": Kind.CLUSTER_AUTH_PREFERENCE,
}
ALL = "all"
SUPPORTED = "lock, role, user, cap (cluster_auth_preference), all"


@dataclass(frozen=True, slots=True)
class Ref:
    """`kind` None means every kind (`all`); `name` "" means every resource of the kind."""

    kind: Kind | None
    name: str = ""


def parse_ref(text: str, *, need_name: bool = False) -> Ref:
    """Parse `kind[/name]`; UsageError with the exact reason when it is not one."""
    kind_text, slash, name = text.partition("/")
    if kind_text == ALL:
        if slash:
            raise UsageError(f'"all" takes no name, got {quote(text)}')
        if need_name:
            raise UsageError(_needs_name(text))
        return Ref(None)
    kind = KIND_ALIASES.get(kind_text)
    if kind is None:
        raise UsageError(f"unknown resource kind {quote(kind_text)} (supported: {SUPPORTED})")
    if slash and not name:
        raise UsageError(f"empty resource name in {quote(text)}: use {kind_text}/<name>")
    if need_name and not name and kind is not Kind.CLUSTER_AUTH_PREFERENCE:
        raise UsageError(_needs_name(text))
    if kind is Kind.CLUSTER_AUTH_PREFERENCE:
        if name and name != CLUSTER_AUTH_PREFERENCE_NAME:
            raise UsageError(
                f"the cluster auth preference is named {quote(CLUSTER_AUTH_PREFERENCE_NAME)}, "
                f"got {quote(name)}"
            )
        return Ref(kind)
    if name:
        try:
            validate_name(name, kind.value)
        except ValidationError as error:
            raise UsageError(str(error)) from None
    return Ref(kind, name)


def _needs_name(text: str) -> str:
    return f"{quote(text)} names no single resource: use <kind>/<name>, e.g. lock/<name>"

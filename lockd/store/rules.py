"""The semantics every store adapter shares: put modes, messages and argument checks.

Keeping them here means the adapters differ only in how they keep data, never in what
a caller sees (the contract suite in `tests/contract` holds them to that).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from lockd.domain.errors import (
    AlreadyExistsError,
    CompactedError,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
)
from lockd.domain.events import REPLICATED_KINDS
from lockd.domain.lock import quote
from lockd.domain.ports import JoinToken, PutMode
from lockd.domain.resources import CLUSTER_AUTH_PREFERENCE_NAME, Kind
from lockd.domain.unix_micros import require_aware

# One message for every refused join token, so a caller cannot tell unknown from used,
# expired or of another kind.
TOKEN_REFUSED_MESSAGE = "join token is invalid, expired or already used"
_DIGEST = re.compile(r"[0-9a-f]{64}")

# Snapshots list kinds in this order: agents need the preference before anything else.
SNAPSHOT_KIND_ORDER = (Kind.CLUSTER_AUTH_PREFERENCE, Kind.ROLE, Kind.LOCK)


def not_found(kind: Kind, name: str) -> NotFoundError:
    return NotFoundError(f"{kind.value} {quote(name)} not found")


def already_exists(kind: Kind, name: str) -> AlreadyExistsError:
    return AlreadyExistsError(f"{kind.value} {quote(name)} already exists")


def check_put(kind: Kind, name: str, exists: bool, mode: PutMode) -> None:
    """Refuse a put its mode forbids. The preference is a singleton: always an upsert."""
    if kind is Kind.CLUSTER_AUTH_PREFERENCE:
        return
    if mode is PutMode.CREATE and exists:
        raise already_exists(kind, name)
    if mode is PutMode.UPDATE and not exists:
        raise not_found(kind, name)


def check_user_put(name: str, exists: bool, mode: PutMode) -> None:
    check_put(Kind.USER, name, exists, mode)


def check_replicated_kind(kind: Kind) -> None:
    if kind not in REPLICATED_KINDS:
        raise ValueError(f"{kind.value} is not a replicated kind")


def is_cap_name(name: str) -> bool:
    return name == CLUSTER_AUTH_PREFERENCE_NAME


def check_events_args(revision: int, limit: int) -> None:
    if revision < 0:
        raise ValueError(f"revision must not be negative, got {revision}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


def compacted(revision: int, oldest: int | None) -> CompactedError:
    retained = f"oldest retained revision is {oldest}" if oldest else "no events are retained"
    return CompactedError(f"revision {revision} is older than the retained event log ({retained})")


def schema_too_new(version: int, supported: int) -> UnavailableError:
    """A database written by a newer lockd: refused, and left untouched."""
    return UnavailableError(
        f"store unavailable: database schema version {version} is newer than "
        f"this lockd understands ({supported})"
    )


def check_retention(age: timedelta, count: int) -> None:
    if age < timedelta(0):
        raise ValueError(f"retention age must not be negative, got {age}")
    if count < 0:
        raise ValueError(f"retention count must not be negative, got {count}")


def token_refused() -> UnauthenticatedError:
    return UnauthenticatedError(TOKEN_REFUSED_MESSAGE)


def token_not_found() -> NotFoundError:
    return NotFoundError("join token not found")


def token_exists() -> AlreadyExistsError:
    # The digest is not quoted back: it identifies a credential.
    return AlreadyExistsError("join token already exists")


def check_token(token: JoinToken) -> None:
    """Refuse a token the store must not keep: a bug in the caller, never user input."""
    if not _DIGEST.fullmatch(token.digest):
        raise ValueError("join token digest must be 64 lowercase hex digits (a SHA-256)")
    require_aware(token.expires)


def token_usable(token: JoinToken, kind: str, now: datetime) -> bool:
    """Whether `consume_token(kind, now)` may hand out `token`: its kind, not yet expired."""
    return token.kind == kind and now < token.expires

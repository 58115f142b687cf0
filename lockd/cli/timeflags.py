"""`--ttl`, `--expires` and `--wait` values: parsed locally, refused with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lockd.cli.exit_codes import UsageError
from lockd.domain.errors import ValidationError
from lockd.domain.timeparse import format_rfc3339, parse_duration, parse_rfc3339

CONFLICT_MESSAGE = "use only one of --expires and --ttl"


def positive_duration(flag: str, text: str) -> timedelta:
    try:
        duration = parse_duration(text)
    except ValidationError as error:
        raise UsageError(f"{flag}: {error}") from None
    if duration <= timedelta(0):
        raise UsageError(f'{flag}: "{text}" must be longer than zero')
    return duration


def expiry(ttl: str | None, expires: str | None, now: datetime | None = None) -> datetime | None:
    """When a new lock expires: now + ttl, the --expires time, or None (never)."""
    if ttl is not None and expires is not None:
        raise UsageError(CONFLICT_MESSAGE)
    moment = now or datetime.now(UTC)
    if ttl is not None:
        return _whole_second_up(moment + positive_duration("--ttl", ttl))
    if expires is None:
        return None
    try:
        when = parse_rfc3339(expires)
    except ValidationError as error:
        raise UsageError(f"--expires: {error}") from None
    if when <= moment:
        raise UsageError(f"--expires: {format_rfc3339(when)} is not in the future")
    return when


def _whole_second_up(moment: datetime) -> datetime:
    """Round up to a whole second: tidy timestamps, and never shorter than asked."""
    if not moment.microsecond:
        return moment
    return moment.replace(microsecond=0) + timedelta(seconds=1)

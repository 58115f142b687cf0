"""Times as integer microseconds since the Unix epoch (UTC), the form lockd stores and
streams them in: exact (no float rounding) and cheaper to carry than a datetime, which
is built only when somebody reads one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lockd.domain.errors import InvariantError

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def require_aware(moment: datetime) -> None:
    """A naive time would be read as local time somewhere: refuse it loudly (a bug)."""
    if moment.utcoffset() is None:
        raise InvariantError(f"naive datetime {moment.isoformat()} where a UTC time is kept")


def to_micros(moment: datetime) -> int:
    """An aware datetime as microseconds since the epoch (a naive one: `require_aware`)."""
    require_aware(moment)
    return (moment - UNIX_EPOCH) // MICROSECOND


def from_micros(micros: int) -> datetime:
    """The inverse of `to_micros`: an aware UTC datetime."""
    return UNIX_EPOCH + timedelta(microseconds=micros)

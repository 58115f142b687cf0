"""Strict parsers for the two time notations users type: Go durations and RFC3339.

Durations follow Go's `time.ParseDuration` (`90s`, `10h`, `1h30m`, `1.5h`, units `ns us µs
ms s m h`) but are stricter where a mistake would matter for a lock: empty, negative,
bare numbers (even `0`) and unknown units are refused. Precision is microseconds (values
are floored), the range Go's int64 nanoseconds.

Timestamps are RFC3339 with a mandatory zone (`Z` or `±hh:mm`), normalised to UTC and
printed with `Z`; fractional seconds are kept to the microsecond.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from lockd.domain.errors import ValidationError

_UNIT_NANOS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NANOS = 2**63 - 1
# re.ASCII: `\d` would otherwise match (and int() accept) any Unicode digit, e.g. "١h".
_DURATION_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([^\d.]*)", re.ASCII)
_DURATION_HINT = "use a number with a unit, e.g. 90s, 10h or 1h30m"


def parse_duration(text: str) -> timedelta:
    """Parse a positive or zero Go-style duration such as `1h30m`."""
    if not isinstance(text, str) or not text:
        raise ValidationError(f"invalid duration {text!r}: empty ({_DURATION_HINT})")
    if text[0] in "+-":
        raise ValidationError(f'invalid duration "{text}": durations may not carry a sign')
    nanos = 0
    position = 0
    while position < len(text):
        term = _DURATION_TERM.match(text, position)
        if term is None:
            raise ValidationError(f'invalid duration "{text}" ({_DURATION_HINT})')
        number, unit = term.groups()
        if not unit:
            raise ValidationError(f'invalid duration "{text}": missing unit ({_DURATION_HINT})')
        if unit not in _UNIT_NANOS:
            raise ValidationError(
                f'invalid duration "{text}": unknown unit "{unit}" (units: ns, us, ms, s, m, h)'
            )
        try:
            nanos += _scaled(number, _UNIT_NANOS[unit])
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            raise ValidationError(f'invalid duration "{text}": too long') from None
        if nanos > _MAX_NANOS:
            raise ValidationError(f'invalid duration "{text}": too long')
        position = term.end()
    return timedelta(microseconds=nanos // 1_000)


def _scaled(number: str, unit_nanos: int) -> int:
    """number × unit in whole nanoseconds, exactly (no float rounding)."""
    whole, _, fraction = number.partition(".")
    value = int(whole or "0") * unit_nanos
    if fraction:
        value += int(fraction) * unit_nanos // 10 ** len(fraction)
    return value


def format_duration(duration: timedelta) -> str:
    """Go's `Duration.String()` for whole seconds and above: `10h0m0s`, `1m30s`, `45s`."""
    total_micros = duration // timedelta(microseconds=1)
    sign = "-" if total_micros < 0 else ""
    total_micros = abs(total_micros)
    if total_micros == 0:
        return "0s"
    if total_micros < 1_000_000:
        if total_micros % 1000 == 0:
            return f"{sign}{total_micros // 1000}ms"
        return f"{sign}{total_micros}µs"
    hours, rest = divmod(total_micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds = _trim_fraction(rest / 1_000_000)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def _trim_fraction(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_RFC3339_HINT = "use RFC3339 with a zone, e.g. 2021-08-14T22:27:00Z or 2021-08-14T22:27:00+02:00"


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC3339 timestamp with a zone and return it as an aware UTC datetime."""
    if not isinstance(text, str):
        raise ValidationError(f"invalid timestamp {text!r}: {_RFC3339_HINT}")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValidationError(f'invalid timestamp "{text}": {_RFC3339_HINT}')
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        zone = UTC
        if not zulu:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError("zone offset out of range")
            zone = timezone(-offset if sign == "-" else offset)
        micros = int((fraction or "0").ljust(6, "0")[:6])
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, zone
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise ValidationError(f'invalid timestamp "{text}": {error}') from None


def require_aware(moment: datetime, what: str) -> datetime:
    """Accept a datetime only with a zone (YAML may hand us one); return it in UTC."""
    if moment.utcoffset() is None:
        raise ValidationError(f"{what} has no time zone: {_RFC3339_HINT}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValidationError(f"{what} is out of range once converted to UTC") from None


def format_rfc3339(moment: datetime) -> str:
    """`2021-08-14T22:27:00Z`; fractional seconds only when present, trailing zeros trimmed."""
    utc = require_aware(moment, "timestamp")
    # Not strftime: glibc's %Y does not pad years below 1000 to four digits.
    text = f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}"
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"

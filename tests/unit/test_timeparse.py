"""Go-style durations and RFC3339 timestamps (SPEC §1, §7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import ValidationError
from lockd.domain.timeparse import (
    format_duration,
    format_rfc3339,
    parse_duration,
    parse_rfc3339,
    require_aware,
)
from tests.unit.strategies import aware_datetimes

# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("10h", timedelta(hours=10)),
        ("1.5h", timedelta(minutes=90)),
        ("300ms", timedelta(milliseconds=300)),
        ("2us", timedelta(microseconds=2)),
        ("2µs", timedelta(microseconds=2)),  # U+00B5 MICRO SIGN
        ("2μs", timedelta(microseconds=2)),  # U+03BC GREEK SMALL LETTER MU
        ("1000ns", timedelta(microseconds=1)),
        ("1h0m0s", timedelta(hours=1)),
        ("2h45m30.5s", timedelta(hours=2, minutes=45, seconds=30.5)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("0s", timedelta(0)),
        ("30m30m", timedelta(hours=1)),
    ],
)
def test_parse_duration_accepts_go_durations(text: str, expected: timedelta) -> None:
    """Go's ParseDuration notation with units ns, us/µs/μs, ms, s, m, h."""
    assert parse_duration(text) == expected


def test_parse_duration_floors_below_a_microsecond() -> None:
    """Precision is microseconds: 1500ns is 1µs, 999ns is zero."""
    assert parse_duration("1500ns") == timedelta(microseconds=1)
    assert parse_duration("999ns") == timedelta(0)


def test_parse_duration_is_exact_for_decimal_fractions() -> None:
    """0.1h is exactly six minutes (no float rounding)."""
    assert parse_duration("0.1h") == timedelta(minutes=6)
    assert parse_duration("1.000001s") == timedelta(seconds=1, microseconds=1)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("-1h", "may not carry a sign"),
        ("+1h", "may not carry a sign"),
        ("-0s", "may not carry a sign"),
        ("0", "missing unit"),
        ("10", "missing unit"),
        ("1h30", "missing unit"),
        ("1d", 'unknown unit "d"'),
        ("1w", 'unknown unit "w"'),
        ("1H", 'unknown unit "H"'),
        ("1 h", 'unknown unit " h"'),
        ("1h ", 'unknown unit "h "'),
        ("h", "use a number with a unit"),
        (" 1h", "use a number with a unit"),
        (".", "use a number with a unit"),
        ("1.5.5h", "missing unit"),
        ("1e3s", 'unknown unit "e"'),
        ("1,5h", 'unknown unit ","'),
        ("١h", "use a number with a unit"),  # ARABIC-INDIC DIGIT ONE: Go wants ASCII digits
        ("9999999999h", "too long"),
        ("9223372036854775808ns", "too long"),
    ],
)
def test_parse_duration_refuses_malformed_durations(text: str, reason: str) -> None:
    """Empty, signed, bare numbers (even 0), unknown units and overflow are refused."""
    with pytest.raises(ValidationError, match="invalid duration") as caught:
        parse_duration(text)
    assert reason in str(caught.value)


def test_parse_duration_accepts_the_largest_go_duration() -> None:
    """2^63-1 nanoseconds (Go's maximum) is accepted, floored to microseconds."""
    assert parse_duration("9223372036854775807ns") == timedelta(microseconds=9223372036854775)


def test_parse_duration_refuses_numbers_with_thousands_of_digits() -> None:
    """Numbers past int()'s digit limit are a ValidationError, not a ValueError."""
    with pytest.raises(ValidationError, match="too long"):
        parse_duration("1" * 5000 + "s")
    with pytest.raises(ValidationError, match="too long"):
        parse_duration("0." + "1" * 5000 + "s")


@pytest.mark.parametrize("value", [None, 10, b"10s"])
def test_parse_duration_refuses_non_strings(value: object) -> None:
    """A non-string is refused as invalid, not crashed on."""
    with pytest.raises(ValidationError, match="invalid duration"):
        parse_duration(value)  # type: ignore[arg-type]


@given(st.text(max_size=20))
def test_parse_duration_raises_only_validation_error_on_any_text(text: str) -> None:
    """Any text yields a non-negative timedelta or a ValidationError."""
    try:
        result = parse_duration(text)
    except ValidationError:
        return
    assert result >= timedelta(0)


@given(st.text(alphabet="0123456789.hmsuµμn+- d١", max_size=16))
def test_parse_duration_raises_only_validation_error_on_duration_like_text(text: str) -> None:
    """Text made of duration characters parses or fails with ValidationError only."""
    try:
        result = parse_duration(text)
    except ValidationError:
        return
    assert result >= timedelta(0)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(hours=10), "10h0m0s"),
        (timedelta(minutes=90), "1h30m0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(milliseconds=300), "300ms"),
        (timedelta(microseconds=7), "7µs"),
        (timedelta(0), "0s"),
    ],
)
def test_format_duration_prints_like_go(duration: timedelta, text: str) -> None:
    """format_duration follows Go's Duration.String()."""
    assert format_duration(duration) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=100_000)))
def test_formatted_durations_parse_back_to_the_same_value(duration: timedelta) -> None:
    """parse_duration(format_duration(d)) == d for every non-negative duration."""
    assert parse_duration(format_duration(duration)) == duration


# --- RFC3339 -------------------------------------------------------------------------


def test_parse_rfc3339_accepts_zulu_time() -> None:
    """`2021-08-14T22:27:00Z` parses to an aware UTC datetime."""
    parsed = parse_rfc3339("2021-08-14T22:27:00Z")
    assert parsed == datetime(2021, 8, 14, 22, 27, tzinfo=UTC)
    assert parsed.tzinfo is UTC


def test_parse_rfc3339_normalises_offsets_to_utc() -> None:
    """`+02:00` is converted to the same instant in UTC."""
    parsed = parse_rfc3339("2021-08-15T00:27:00+02:00")
    assert parsed.tzinfo is UTC
    assert (parsed.day, parsed.hour, parsed.minute) == (14, 22, 27)


def test_parse_rfc3339_accepts_negative_offsets_and_lowercase_separators() -> None:
    """`-05:30` offsets and the lowercase `t`/`z` RFC3339 allows."""
    assert parse_rfc3339("2021-08-14t16:57:00-05:30") == datetime(2021, 8, 14, 22, 27, tzinfo=UTC)
    assert parse_rfc3339("2021-08-14t22:27:00z") == datetime(2021, 8, 14, 22, 27, tzinfo=UTC)


def test_parse_rfc3339_keeps_fractions_to_the_microsecond() -> None:
    """Nanosecond digits are truncated to microseconds."""
    assert parse_rfc3339("2021-08-14T22:27:00.123456789Z").microsecond == 123456
    assert parse_rfc3339("2021-08-14T22:27:00.5Z").microsecond == 500000


@pytest.mark.parametrize(
    "text",
    [
        "2021-08-14T22:27:00",  # naive
        "2021-08-14 22:27:00Z",
        "2021-08-14",
        "2021-08-14T22:27Z",
        "2021-08-14T22:27:00+0200",
        "2021-08-14T22:27:00+02",
        "2021-08-14T22:27:00.Z",
        "2021-08-14T22:27:00.1234567890Z",
        "2021-02-30T00:00:00Z",
        "2021-13-01T00:00:00Z",
        "2021-00-10T00:00:00Z",
        "2021-08-14T24:00:00Z",
        "2021-08-14T22:60:00Z",
        "2021-08-14T22:27:60Z",
        "2021-08-14T22:27:00+24:00",
        "2021-08-14T22:27:00+02:60",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "٢٠٢١-08-14T22:27:00Z",  # non-ASCII digits
        " 2021-08-14T22:27:00Z",
        "2021-08-14T22:27:00Z\n",
        "",
        "now",
    ],
)
def test_parse_rfc3339_refuses_invalid_or_zoneless_timestamps(text: str) -> None:
    """Naive, malformed, impossible and out-of-range timestamps are ValidationErrors."""
    with pytest.raises(ValidationError, match="invalid timestamp"):
        parse_rfc3339(text)


def test_parse_rfc3339_refuses_non_strings() -> None:
    """A non-string is refused, not crashed on."""
    with pytest.raises(ValidationError, match="invalid timestamp"):
        parse_rfc3339(20210814)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_parse_rfc3339_raises_only_validation_error_on_any_text(text: str) -> None:
    """Any text yields an aware UTC datetime or a ValidationError."""
    try:
        result = parse_rfc3339(text)
    except ValidationError:
        return
    assert result.tzinfo is UTC


@given(
    st.from_regex(
        r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
        fullmatch=True,
    )
)
def test_parse_rfc3339_raises_only_validation_error_on_well_shaped_text(text: str) -> None:
    """Well-shaped but possibly impossible timestamps parse or fail with ValidationError."""
    try:
        result = parse_rfc3339(text)
    except ValidationError:
        return
    assert result.tzinfo is UTC
    assert text.isascii()


def test_format_rfc3339_prints_utc_with_z() -> None:
    """A UTC time prints with `Z` and no fraction when it has none."""
    assert format_rfc3339(datetime(2021, 8, 14, 22, 27, tzinfo=UTC)) == "2021-08-14T22:27:00Z"


def test_format_rfc3339_converts_offsets_to_utc() -> None:
    """A time in +02:00 is printed as the same instant in UTC."""
    moment = datetime(2021, 8, 15, 0, 27, tzinfo=timezone(timedelta(hours=2)))
    assert format_rfc3339(moment) == "2021-08-14T22:27:00Z"


def test_format_rfc3339_trims_trailing_zeros_of_the_fraction() -> None:
    """Fractional seconds are kept, without trailing zeros."""
    moment = datetime(2021, 8, 14, 22, 27, 0, 500000, tzinfo=UTC)
    assert format_rfc3339(moment) == "2021-08-14T22:27:00.5Z"


def test_format_rfc3339_pads_years_below_1000_to_four_digits() -> None:
    """Year 999 prints as `0999`, which RFC3339 (and parse_rfc3339) require."""
    assert format_rfc3339(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05Z"
    assert format_rfc3339(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00Z"


def test_format_rfc3339_refuses_naive_datetimes() -> None:
    """A naive datetime has no instant to print."""
    with pytest.raises(ValidationError, match="has no time zone"):
        format_rfc3339(datetime(2021, 8, 14, 22, 27))


def test_require_aware_refuses_naive_and_converts_aware_to_utc() -> None:
    """require_aware names the value when refusing, and returns UTC otherwise."""
    with pytest.raises(ValidationError, match=r"^spec.expires has no time zone"):
        require_aware(datetime(2021, 8, 14), "spec.expires")
    moment = datetime(2021, 8, 15, 0, 27, tzinfo=timezone(timedelta(hours=2)))
    converted = require_aware(moment, "x")
    assert converted.tzinfo is UTC
    assert converted == moment


def test_require_aware_refuses_times_that_leave_the_range_in_utc() -> None:
    """0001-01-01T00:00+01:00 is before year 1 in UTC: a ValidationError, not OverflowError."""
    moment = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(ValidationError, match="out of range"):
        require_aware(moment, "spec.expires")


@given(aware_datetimes)
def test_formatted_timestamps_parse_back_to_the_same_instant(moment: datetime) -> None:
    """parse_rfc3339(format_rfc3339(t)) == t, in UTC, for any aware datetime."""
    parsed = parse_rfc3339(format_rfc3339(moment))
    assert parsed == moment
    assert parsed.tzinfo is UTC
    assert format_rfc3339(parsed) == format_rfc3339(moment)

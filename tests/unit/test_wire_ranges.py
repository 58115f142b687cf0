"""Wire conversion over the whole integer ranges protobuf admits: a domain value or a
ValidationError naming the field, never another exception (issue 15, item 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import ValidationError
from lockd.v1 import resources_pb2 as pb
from lockd.wire import convert

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@given(seconds=INT64, nanos=INT32)
def test_a_lock_expiry_converts_or_is_refused_naming_the_field(seconds: int, nanos: int) -> None:
    """Any (seconds, nanos) pair gives an aware datetime or ValidationError on lock.expires."""
    message = pb.Lock(name="l", target=pb.LockTarget(user="u"))
    message.expires.seconds, message.expires.nanos = seconds, nanos
    in_range = (
        convert.TIMESTAMP_MIN_SECONDS <= seconds <= convert.TIMESTAMP_MAX_SECONDS
        and 0 <= nanos < convert.NANOS_PER_SECOND
    )
    if not in_range:
        with pytest.raises(ValidationError, match=r"^lock\.expires: timestamp "):
            convert.lock_from_pb(message, validate=False)
        return
    lock = convert.lock_from_pb(message, validate=False)
    assert lock.expires is not None
    assert lock.expires.utcoffset() == timedelta(0)


@given(seconds=INT64, nanos=INT32)
def test_a_duration_converts_or_is_refused_naming_the_field(seconds: int, nanos: int) -> None:
    """Any Duration gives a timedelta or ValidationError naming the label."""
    in_range = (
        abs(seconds) <= convert.DURATION_MAX_SECONDS
        and abs(nanos) < convert.NANOS_PER_SECOND
        and not (seconds > 0 > nanos or seconds < 0 < nanos)
    )
    message = Duration(seconds=seconds, nanos=nanos)
    if not in_range:
        with pytest.raises(ValidationError, match=r"^ttl: duration "):
            convert.duration_from_pb(message, "ttl")
        return
    micros = abs(nanos) // 1000 * (1 if nanos >= 0 else -1)  # protobuf truncates
    assert convert.duration_from_pb(message, "ttl") == timedelta(
        seconds=seconds, microseconds=micros
    )


@given(value=INT32)
def test_an_enum_number_converts_or_is_refused_naming_the_field(value: int) -> None:
    """Put modes and locking modes: a defined number converts, any other is refused."""
    role = pb.Role(name="r", lock_mode=value)  # type: ignore[arg-type]
    if value in convert.PUT_MODE_FROM_PB:
        assert convert.put_mode_from_pb(value) is convert.PUT_MODE_FROM_PB[value]
    else:
        with pytest.raises(ValidationError, match=r"^mode: unknown enum value"):
            convert.put_mode_from_pb(value)
    if value in convert.MODE_FROM_PB:
        assert convert.role_from_pb(role, validate=False).lock_mode is convert.MODE_FROM_PB[value]  # type: ignore[index]
    else:
        with pytest.raises(ValidationError, match=r"^role\.lock_mode: "):
            convert.role_from_pb(role, validate=False)


@given(moment=st.datetimes(timezones=st.timezones()))
def test_a_datetime_becomes_the_timestamp_protobuf_would_make(moment: datetime) -> None:
    """timestamp_to_pb of any aware datetime equals Timestamp.FromDatetime's and
    converts back to the same instant."""
    expected = Timestamp()
    expected.FromDatetime(moment.astimezone(UTC))
    stamp = convert.timestamp_to_pb(moment)
    assert stamp == expected
    message = pb.Lock(expires=stamp)
    assert convert.timestamp_from_pb(message, "expires") == moment.astimezone(UTC)

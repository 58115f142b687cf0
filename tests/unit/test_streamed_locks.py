"""Locks as an agent reads them off the wire: packed straight from the protobuf into the
LockTable's record, exactly what the `Lock` path gives, with the same refusals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lockd.domain.errors import ValidationError
from lockd.domain.events import Event, EventType
from lockd.domain.identity import Identity
from lockd.domain.lock import TARGET_FIELDS, Lock, LockTarget
from lockd.domain.lock_table import LockTable, PackedLock, encode
from lockd.domain.resources import Kind
from lockd.domain.unix_micros import to_micros
from lockd.domain.view import LocalView, ViewSettings
from lockd.v1 import resources_pb2 as pb
from lockd.wire import convert
from tests.unit.strategies import any_texts, target_values
from tests.unit.strategies import locks as valid_locks

WALL = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def received(lock: Lock) -> Lock:
    """The lock as the `Lock` path gives it after the wire (times in UTC)."""
    return convert.lock_from_pb(convert.lock_to_pb(lock))


@given(valid_locks)
def test_a_streamed_lock_is_the_record_of_the_lock_the_lock_path_builds(lock: Lock) -> None:
    """Packed from the protobuf, a lock has the very record, pairs and times the table
    would make of the `Lock` the other path builds, and unpacks to an equal lock."""
    expected = received(lock)
    streamed = convert.streamed_lock_from_pb(convert.lock_to_pb(lock))
    if "\x00" in lock.created_by:  # no record can hold it: the Lock itself
        assert streamed == expected
        return
    assert isinstance(streamed, PackedLock)
    assert streamed.record == encode(expected)
    assert streamed.unpack() == expected
    assert (streamed.name, streamed.pairs, streamed.expires) == (
        expected.name,
        expected.target.pairs(),
        expected.expires,
    )
    created = expected.created_at
    micros = None if created is None else (created - EPOCH) // timedelta(microseconds=1)
    assert streamed.created_us == micros


messages = st.builds(
    lambda name, values, message, created_by: pb.Lock(
        name=name, target=pb.LockTarget(**values), message=message, created_by=created_by
    ),
    any_texts,
    st.dictionaries(st.sampled_from(TARGET_FIELDS), any_texts | target_values, max_size=3),
    any_texts,
    any_texts,
)


def safely(build: st.SearchStrategy[pb.Lock]) -> st.SearchStrategy[pb.Lock | None]:
    """None where protobuf itself refuses the text (a lone surrogate is not UTF-8)."""

    def attempt(draw: st.DrawFn) -> pb.Lock | None:
        try:
            return draw(build)
        except (ValueError, UnicodeError):
            return None

    return st.composite(attempt)()


@given(safely(messages))
def test_a_streamed_lock_is_refused_exactly_when_the_lock_path_refuses_it(
    message: pb.Lock | None,
) -> None:
    """Any name, target, message and creator: both paths accept, or both raise the same
    ValidationError (the first broken rule of SPEC §1)."""
    assume(message is not None)
    assert message is not None

    def outcome(convert_lock: Callable[[pb.Lock], object]) -> object:
        try:
            result = convert_lock(message)
        except ValidationError as error:
            return ("refused", str(error))
        return result.unpack() if isinstance(result, PackedLock) else result

    assert outcome(convert.streamed_lock_from_pb) == outcome(convert.lock_from_pb)


def test_a_streamed_lock_with_an_out_of_range_time_is_refused_naming_the_field() -> None:
    """A created_at past year 9999 is INVALID_ARGUMENT on lock.created_at, as for a Lock."""
    message = pb.Lock(name="l", target=pb.LockTarget(user="u"))
    message.created_at.seconds = convert.TIMESTAMP_MAX_SECONDS + 1
    with pytest.raises(ValidationError, match=r"^lock\.created_at: timestamp seconds"):
        convert.streamed_lock_from_pb(message)


def test_a_packed_lock_terminates_the_sessions_it_hits_as_its_lock_would() -> None:
    """Applied from a packed event, a lock ends the sessions it hits with the reason and
    name the `Lock` gives, leaves the others, and is filed for later decisions."""
    lock = Lock("l1", LockTarget(user="alice"), "compromised", created_at=WALL)
    packed = convert.streamed_lock_from_pb(convert.lock_to_pb(lock))
    assert isinstance(packed, PackedLock)
    view = LocalView(ViewSettings("node-1"))
    view.apply_snapshot("e", 0, [], 0.0, WALL)
    view.open_session("s1", Identity(user="alice"), 0.0, WALL)
    view.open_session("s2", Identity(user="bob"), 0.0, WALL)
    event = Event(1, EventType.PUT, Kind.LOCK, "l1", packed, to_micros(WALL))
    [ended] = view.apply_events("e", 1, 1, [event], 0.0, WALL)
    assert (ended.session_id, ended.lock_name) == ("s1", "l1")
    assert ended.reason == lock.in_force_message()
    assert view.session_count == 1
    assert not view.decide(Identity(user="alice"), 0.0, WALL).allowed
    assert isinstance(view.locks, LockTable)
    assert view.locks["l1"] == lock

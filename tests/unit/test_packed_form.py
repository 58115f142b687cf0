"""The packed form of a lock (lockd.domain.packed_form): what the server sends an agent
that asks for it is the very record the agent's table files, and anything that is not
a packed lock — or holds text a lock may not — is refused with a ValidationError."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from lockd.domain.errors import ValidationError
from lockd.domain.lock import TARGET_FIELDS, Lock, LockTarget
from lockd.domain.lock_table import FIELD_CODES, PackedLock
from lockd.domain.packed_form import (
    MAX_MICROS,
    MIN_MICROS,
    from_packed_form,
    from_packed_forms,
    packed_form,
)
from lockd.v1 import resources_pb2 as pb
from lockd.wire import convert
from tests.unit.strategies import any_texts, target_values
from tests.unit.strategies import locks as valid_locks


@given(valid_locks)
def test_a_packed_lock_is_what_the_protobuf_path_files(lock: Lock) -> None:
    """Packed and read back, a lock is the PackedLock — record, pairs and times — that
    the agent would build from the same lock sent as a protobuf Lock."""
    message = convert.lock_to_pb(lock)
    received = convert.lock_from_pb(message)
    data = packed_form(received)
    if data is None:  # a creator with NUL has no record: sent as a Lock
        assert "\x00" in lock.created_by
        return
    assert from_packed_form(data) == convert.streamed_lock_from_pb(message)
    assert from_packed_form(data).unpack() == received


def _packed(name: str, values: dict[str, str], message: str, created_by: str) -> bytes:
    """The packed form of these parts, however bad they are (no check on the way)."""
    pairs = [
        part
        for field in TARGET_FIELDS
        if field in values
        for part in (FIELD_CODES[field], values[field])
    ]
    return "\x00".join([name, message, created_by, "", "", *pairs]).encode()


@given(
    name=any_texts,
    values=st.dictionaries(
        st.sampled_from(TARGET_FIELDS), any_texts | target_values, min_size=1, max_size=3
    ),
    message=any_texts,
    created_by=any_texts,
)
def test_a_packed_lock_is_refused_exactly_when_the_lock_path_refuses_it(
    name: str, values: dict[str, str], message: str, created_by: str
) -> None:
    """Any text: both forms of the same lock are accepted, or both refused with the same
    error (the first broken rule of SPEC §1)."""
    assume("\x00" not in name + message + created_by + "".join(values.values()))
    assume(all(values.values()))
    try:
        lock_message = pb.Lock(
            name=name, target=pb.LockTarget(**values), message=message, created_by=created_by
        )
    except (ValueError, UnicodeError):  # protobuf refuses a lone surrogate itself
        return
    data = _packed(name, values, message, created_by)

    def outcome(read: Callable[[], object]) -> object:
        try:
            result = read()
        except ValidationError as error:
            return ("refused", str(error))
        return result.unpack() if isinstance(result, PackedLock) else result

    assert outcome(lambda: from_packed_form(data)) == outcome(
        lambda: convert.lock_from_pb(lock_message)
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"l1\x00msg\x00admin\x00\x00", "expected name, message"),
        (b"l1\x00msg\x00admin\x00\x00\x00a", "expected name, message"),
        (b"l1\x00\x00\x00\x00\x00a\x00alice\x00b", "expected name, message"),
        (b"l1\x00\x00\x00\x00\x00a\x00\xff", "not valid UTF-8"),
        (b"l1\x00\x00\x00\x00\x00z\x00alice", "unknown target field code 'z'"),
        (b"l1\x00\x00\x00\x00\x00b\x00dev\x00a\x00alice", "out of order or repeated"),
        (b"l1\x00\x00\x00\x00\x00a\x00alice\x00a\x00bob", "out of order or repeated"),
        (b"l1\x00\x00\x00\x00\x00a\x00", "target user is empty"),
        (b"l1\x00\x00\x00\x00\x00a\x00ali\x1bce", "lock target user contains control"),
        (b"\x00\x00\x00\x00\x00a\x00alice", "lock name must not be empty"),
    ],
)
def test_a_malformed_packed_lock_is_refused_naming_what_is_wrong(data: bytes, error: str) -> None:
    """Missing or extra fields, bad UTF-8, unknown, unordered or empty target fields and
    text the rules refuse: each a ValidationError saying so."""
    with pytest.raises(ValidationError, match=error):
        from_packed_form(data)


@pytest.mark.parametrize("stamp", ["0x1f", "1F", "01", "+1", " 1", "1_0", "g", "-0"])
def test_a_time_not_in_canonical_hexadecimal_is_refused(stamp: str) -> None:
    """One lock, one packed form: a time must be written as the server writes it."""
    data = f"l1\x00\x00\x00{stamp}\x00\x00a\x00alice".encode()
    with pytest.raises(ValidationError, match=r"expires .* is not lowercase hexadecimal"):
        from_packed_form(data)


@pytest.mark.parametrize("micros", [MIN_MICROS - 1, MAX_MICROS + 1])
def test_a_time_beyond_what_a_timestamp_holds_is_refused(micros: int) -> None:
    """Before year 1 or after year 9999: refused naming the field."""
    data = f"l1\x00\x00\x00\x00{micros:x}\x00a\x00alice".encode()
    with pytest.raises(ValidationError, match=r"created_at .* out of range"):
        from_packed_form(data)


def test_the_limits_of_a_timestamp_are_accepted() -> None:
    """The first and last microsecond a Timestamp holds are times like any other."""
    data = f"l1\x00\x00\x00{MAX_MICROS:x}\x00{MIN_MICROS:x}\x00a\x00alice".encode()
    lock = from_packed_form(data).unpack()
    assert lock.expires is not None
    assert lock.created_at is not None
    assert (lock.expires.year, lock.created_at.year) == (9999, 1)


def test_a_lock_without_a_record_has_no_packed_form() -> None:
    """A creator containing NUL cannot be packed: the server sends that lock as a Lock."""
    assert packed_form(Lock("l1", LockTarget(user="alice"), created_by="a\x00b")) is None


def _outcome(read: Callable[[], object]) -> object:
    try:
        return read()
    except ValidationError as error:
        return ("refused", str(error))


@given(st.lists(valid_locks, max_size=6), st.lists(any_texts, max_size=3))
def test_a_chunk_checked_at_once_gives_what_each_lock_alone_gives(
    locks: list[Lock], messages: list[str]
) -> None:
    """A snapshot chunk's packed locks read together are the locks read one by one, and
    a chunk holding a bad one (any text as a message, a separator in a creator) is
    refused with the error of its first bad lock."""
    datas = [
        data
        for lock in locks
        if (data := packed_form(convert.lock_from_pb(convert.lock_to_pb(lock)))) is not None
    ]
    datas += [_packed("bad", {"user": "u"}, message, "\x1e") for message in messages]

    assert _outcome(lambda: from_packed_forms(datas).locks()) == _outcome(
        lambda: [from_packed_form(data) for data in datas]
    )


@pytest.mark.parametrize(
    "bad",
    [
        b"l9\x00\x00\x00\x00\x00a\x00\xff",
        b"l9\x00\x00\x00\x00\x00a\x00ali\x1bce",
        b"l9\x00\x00",
        b"l/9\x00\x00\x00\x00\x00a\x00alice",
        b"l 9\x00\x00\x00\x00\x00a\x00alice",
        b"l9\x00" + b"x" * 4097 + b"\x00\x00\x00\x00a\x00alice",
        b"l9\x00\x00\x00\x00\x00a\x00" + b"x" * 1025,
        b"x" * 254 + b"\x00\x00\x00\x00\x00a\x00alice",
        b"l9\x00\x00\x00\x00\x00z\x00alice",
        b"l9\x00\x00\x00\x00\x00a\x00",
        b"l9\x00\x00\x00\x001F\x00a\x00alice",
    ],
)
def test_a_chunk_with_one_bad_lock_is_refused_as_that_lock(bad: bytes) -> None:
    """Bad UTF-8, a control character, a malformed line, a name, message or value the
    rules refuse, an unknown or empty target, a time not canonical, among good locks:
    the chunk is refused with the error that lock gets on its own."""
    good = packed_form(Lock("l1", LockTarget(user="alice")))
    assert good is not None
    with pytest.raises(ValidationError) as alone:
        from_packed_form(bad)
    with pytest.raises(ValidationError, match=re.escape(str(alone.value))):
        from_packed_forms([good, bad, good])

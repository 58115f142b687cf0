"""The lock resource: validation (SPEC §1), the in-force rule and the exact messages (§3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain import lock as lock_module
from lockd.domain.errors import ValidationError
from lockd.domain.lock import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    MAX_TARGET_VALUE_LENGTH,
    STRICT_LOCKOUT_MESSAGE,
    TARGET_FIELD_TITLES,
    TARGET_FIELDS,
    Lock,
    LockTarget,
    access_denied_message,
    validate_name,
)
from tests.unit.strategies import T0, lock_targets, locks

NAME = "dc7cee9d-fe5e-4534-a90d-db770f0234a1"


def make_lock(**overrides: object) -> Lock:
    fields: dict[str, object] = {"name": NAME, "target": LockTarget(user="foo@example.com")}
    fields.update(overrides)
    return Lock(**fields)  # type: ignore[arg-type]


# --- target fields -------------------------------------------------------------------


def test_target_fields_are_the_ten_of_section_1_in_order() -> None:
    """TARGET_FIELDS lists SPEC §1's target fields in the documented order."""
    assert TARGET_FIELDS == (
        "user",
        "role",
        "login",
        "mfa_device",
        "device",
        "server_id",
        "windows_desktop",
        "access_request",
        "bot_instance_id",
        "join_token",
    )


def test_target_field_titles_are_the_camelcase_names_of_section_3() -> None:
    """Each field has SPEC §3's CamelCase name, in the same order."""
    assert [TARGET_FIELD_TITLES[f] for f in TARGET_FIELDS] == [
        "User",
        "Role",
        "Login",
        "MFADevice",
        "Device",
        "ServerID",
        "WindowsDesktop",
        "AccessRequest",
        "BotInstanceID",
        "JoinToken",
    ]


def test_empty_target_is_refused_with_the_exact_message() -> None:
    """A target with no field set fails with `at least one target field must be set`."""
    with pytest.raises(ValidationError) as caught:
        LockTarget().validate()
    assert str(caught.value) == "at least one target field must be set"


def test_lock_with_empty_target_is_refused_with_the_exact_message() -> None:
    """Lock.validate reports the empty target with SPEC §1's text."""
    with pytest.raises(ValidationError, match=r"^at least one target field must be set$"):
        make_lock(target=LockTarget()).validate()


@pytest.mark.parametrize("field", TARGET_FIELDS)
def test_each_single_field_makes_a_target_non_empty(field: str) -> None:
    """Setting any one target field alone yields a valid, non-empty target."""
    target = LockTarget(**{field: "x"})
    assert not target.is_empty()
    assert target.pairs() == ((field, "x"),)
    target.validate()
    make_lock(target=target).validate()


def test_target_value_of_the_maximum_length_is_accepted() -> None:
    """A target value of exactly MAX_TARGET_VALUE_LENGTH characters passes."""
    LockTarget(user="u" * MAX_TARGET_VALUE_LENGTH).validate()


def test_target_value_longer_than_the_maximum_is_refused() -> None:
    """One character past MAX_TARGET_VALUE_LENGTH is refused, naming the field."""
    with pytest.raises(ValidationError, match="lock target login is longer than 1024"):
        LockTarget(login="u" * (MAX_TARGET_VALUE_LENGTH + 1)).validate()


@pytest.mark.parametrize("value", ["a\nb", "a\tb", "\x00", "x\x1f", "x\x7f"])
def test_target_value_with_control_characters_is_refused(value: str) -> None:
    """C0 control characters and DEL in a target value are refused."""
    with pytest.raises(ValidationError, match="lock target role contains control characters"):
        LockTarget(role=value).validate()


def test_target_value_with_a_lone_surrogate_is_refused() -> None:
    """A value UTF-8 cannot carry (a lone surrogate, e.g. from JSON "\\ud800") is refused."""
    with pytest.raises(ValidationError, match="lock target user is not valid Unicode text"):
        LockTarget(user="a\ud800").validate()


# --- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [NAME, "a", "n" * MAX_NAME_LENGTH, "lock.with-dots_and:colons", "日本語", "no"]
)
def test_lock_names_that_are_printable_without_slash_or_space_are_accepted(name: str) -> None:
    """Names of 1–253 printable characters without '/' or whitespace pass."""
    validate_name(name, "lock")
    make_lock(name=name).validate()


def test_empty_lock_name_is_refused() -> None:
    """An empty name is refused with `lock name must not be empty`."""
    with pytest.raises(ValidationError, match=r"^lock name must not be empty$"):
        make_lock(name="").validate()


def test_lock_name_longer_than_the_maximum_is_refused() -> None:
    """A 254-character name is refused."""
    with pytest.raises(ValidationError, match="lock name is longer than 253 characters"):
        make_lock(name="n" * (MAX_NAME_LENGTH + 1)).validate()


@pytest.mark.parametrize("name", ["a/b", "a b", "a\tb", "a\nb", "a\x00b", "a\u200bb", "\xa0"])
def test_lock_name_with_slash_whitespace_or_control_characters_is_refused(name: str) -> None:
    """'/', whitespace, control and other unprintable characters are refused in names."""
    with pytest.raises(ValidationError, match="may not contain '/', whitespace or control"):
        validate_name(name, "lock")


def test_name_error_names_the_kind() -> None:
    """validate_name puts the resource kind in its message."""
    with pytest.raises(ValidationError, match=r"^role name must not be empty$"):
        validate_name("", "role")


# --- message and times ---------------------------------------------------------------


def test_message_of_exactly_the_byte_bound_is_accepted() -> None:
    """A message of MAX_MESSAGE_BYTES (4 KiB) bytes passes."""
    assert MAX_MESSAGE_BYTES == 4096
    make_lock(message="m" * 4096).validate()


def test_message_one_byte_over_the_bound_is_refused() -> None:
    """A 4097-byte message is refused."""
    with pytest.raises(ValidationError, match="lock message is longer than 4096 bytes"):
        make_lock(message="m" * 4097).validate()


def test_message_bound_counts_utf8_bytes_not_characters() -> None:
    """2049 two-byte characters (4098 bytes) are refused although they are < 4096 chars."""
    make_lock(message="é" * 2048).validate()
    with pytest.raises(ValidationError, match="longer than 4096 bytes"):
        make_lock(message="é" * 2049).validate()


def test_message_with_a_lone_surrogate_is_refused() -> None:
    """A message that cannot be encoded to UTF-8 is a ValidationError, not a crash."""
    with pytest.raises(ValidationError, match="lock message is not valid Unicode text"):
        make_lock(message="bad \udc80").validate()


def test_naive_expires_is_refused() -> None:
    """An expires without a time zone is refused."""
    with pytest.raises(ValidationError, match="lock expires must carry a time zone"):
        make_lock(expires=datetime(2021, 8, 14, 22, 27)).validate()


def test_naive_created_at_is_refused() -> None:
    """A created_at without a time zone is refused."""
    with pytest.raises(ValidationError, match="lock created_at must carry a time zone"):
        make_lock(created_at=datetime(2021, 8, 14, 12, 27)).validate()


def test_aware_expires_in_any_zone_is_accepted() -> None:
    """An expires with a non-UTC offset is valid."""
    plus_two = timezone(timedelta(hours=2))
    make_lock(expires=datetime(2021, 8, 14, 22, 27, tzinfo=plus_two)).validate()
    make_lock(created_at=datetime(2021, 8, 14, 12, 27, tzinfo=plus_two)).validate()


# --- in force ------------------------------------------------------------------------


def test_lock_without_expires_is_in_force_at_any_time() -> None:
    """A lock that never expires is in force from the first to the last representable time."""
    lock = make_lock()
    assert lock.in_force(datetime.min.replace(tzinfo=UTC))
    assert lock.in_force(datetime.max.replace(tzinfo=UTC))


def test_lock_is_in_force_just_before_expires() -> None:
    """One microsecond before expires the lock is in force."""
    assert make_lock(expires=T0).in_force(T0 - timedelta(microseconds=1))


def test_lock_is_no_longer_in_force_at_exactly_expires() -> None:
    """At exactly expires the lock is no longer in force (t < expires)."""
    assert not make_lock(expires=T0).in_force(T0)


def test_lock_is_not_in_force_after_expires() -> None:
    """After expires the lock is not in force."""
    assert not make_lock(expires=T0).in_force(T0 + timedelta(hours=1))


def test_in_force_compares_instants_across_time_zones() -> None:
    """Expires at 00:27+02:00 is the same instant as 22:27Z the day before."""
    plus_two = timezone(timedelta(hours=2))
    lock = make_lock(expires=datetime(2021, 8, 15, 0, 27, tzinfo=plus_two))
    assert not lock.in_force(T0)
    assert lock.in_force(T0 - timedelta(seconds=1))


@given(st.integers(min_value=-(10**6), max_value=10**6))
def test_in_force_is_exactly_now_before_expires(offset_us: int) -> None:
    """For any moment near expires, in_force equals `now < expires`."""
    now = T0 + timedelta(microseconds=offset_us)
    assert make_lock(expires=T0).in_force(now) is (offset_us < 0)


# --- messages ------------------------------------------------------------------------


def test_in_force_message_for_a_user_lock_matches_section_3_byte_for_byte() -> None:
    """The Teleport example message, exactly."""
    lock = make_lock(message="Suspicious activity.")
    assert (
        lock.in_force_message()
        == 'lock targeting User:"foo@example.com" is in force: Suspicious activity.'
    )


def test_in_force_message_has_no_colon_suffix_when_message_is_empty() -> None:
    """Without a message the text ends at `is in force`."""
    assert make_lock().in_force_message() == 'lock targeting User:"foo@example.com" is in force'


def test_target_with_several_fields_is_described_in_section_1_order() -> None:
    """Fields come in SPEC §1 order whatever order they were given in."""
    target = LockTarget(role="dev", user="alice")
    assert target.describe() == 'User:"alice" Role:"dev"'
    lock = make_lock(target=target, message="m")
    assert lock.in_force_message() == 'lock targeting User:"alice" Role:"dev" is in force: m'


def test_target_with_every_field_uses_all_camelcase_names() -> None:
    """All ten fields appear with their CamelCase names, space separated."""
    target = LockTarget(**{f: f"v{i}" for i, f in enumerate(TARGET_FIELDS)})
    assert target.describe() == (
        'User:"v0" Role:"v1" Login:"v2" MFADevice:"v3" Device:"v4" ServerID:"v5" '
        'WindowsDesktop:"v6" AccessRequest:"v7" BotInstanceID:"v8" JoinToken:"v9"'
    )


def test_target_value_with_quotes_and_backslashes_is_escaped_like_go() -> None:
    """Values are double-quoted as Go's %q does: `"` and `\\` are backslash-escaped."""
    assert LockTarget(user='a"b\\c').describe() == 'User:"a\\"b\\\\c"'


def test_target_value_with_unicode_is_printed_as_is() -> None:
    """Printable non-ASCII text is not escaped in the target string."""
    assert LockTarget(user="jürgen").describe() == 'User:"jürgen"'


def test_strict_lockout_message_is_exact() -> None:
    """The strict-mode refusal text of SPEC §3."""
    assert STRICT_LOCKOUT_MESSAGE == (
        "preventive lock-out due to local lock view becoming unreliable"
    )


def test_access_denied_message_is_exact() -> None:
    """The missing-permission refusal of SPEC §3."""
    assert access_denied_message("create", "lock") == (
        'access denied to perform action "create" on "lock"'
    )


def test_empty_target_message_constant_is_the_spec_text() -> None:
    """EMPTY_TARGET_MESSAGE is SPEC §1's text (others reuse the constant)."""
    assert lock_module.EMPTY_TARGET_MESSAGE == "at least one target field must be set"


# --- map conversions and matching (Teleport's TestLockTarget* scenarios) --------------


def test_target_map_round_trips_through_as_dict_and_from_pairs() -> None:
    """{user, server_id, mfa_device} converts to a map and back unchanged."""
    target = LockTarget(user="user@sso.tld", server_id="node-uuid", mfa_device="mfa-device-uuid")
    as_map = target.as_dict()
    assert as_map == {
        "user": "user@sso.tld",
        "server_id": "node-uuid",
        "mfa_device": "mfa-device-uuid",
    }
    assert list(as_map) == ["user", "mfa_device", "server_id"]
    assert LockTarget.from_pairs(as_map) == target


def test_from_pairs_refuses_unknown_fields() -> None:
    """Teleport's `node` is not a lockd field: from_pairs refuses it by name."""
    with pytest.raises(ValidationError, match="unknown lock target field 'node'"):
        LockTarget.from_pairs({"user": "u", "node": "node-uuid"})


@given(lock_targets)
def test_any_target_round_trips_through_as_dict(target: LockTarget) -> None:
    """as_dict keeps exactly the non-empty fields, and from_pairs rebuilds the target."""
    assert LockTarget.from_pairs(target.as_dict()) == target
    assert all(target.as_dict().values())


def test_identical_target_matches_the_lock() -> None:
    """A query equal to the lock's target matches it."""
    target = LockTarget(user="user@sso.tld", server_id="node-uuid", mfa_device="mfa-device-uuid")
    lock = make_lock(target=target)
    assert target.matches(lock.target)


def test_target_with_a_different_server_id_does_not_match() -> None:
    """Changing one field of the query to another value stops the match."""
    lock_target = LockTarget(
        user="user@sso.tld", server_id="node-uuid", mfa_device="mfa-device-uuid"
    )
    query = LockTarget(user="user@sso.tld", server_id="node-uuid-2", mfa_device="mfa-device-uuid")
    assert not query.matches(lock_target)


def test_target_with_server_id_cleared_matches_again() -> None:
    """Clearing the differing field makes the remaining fields match again."""
    lock_target = LockTarget(
        user="user@sso.tld", server_id="node-uuid", mfa_device="mfa-device-uuid"
    )
    query = LockTarget(user="user@sso.tld", mfa_device="mfa-device-uuid")
    assert query.matches(lock_target)


def test_disjoint_target_does_not_match() -> None:
    """A query on a field the lock does not set ({login: root}) does not match."""
    lock_target = LockTarget(
        user="user@sso.tld", server_id="node-uuid", mfa_device="mfa-device-uuid"
    )
    assert not LockTarget(login="root").matches(lock_target)


def test_empty_query_never_matches() -> None:
    """An empty query matches nothing, not even an (invalid) empty lock target."""
    lock_target = LockTarget(
        user="user@sso.tld", server_id="node-uuid", mfa_device="mfa-device-uuid"
    )
    assert not LockTarget().matches(lock_target)
    assert not LockTarget().matches(LockTarget())


def test_matching_is_case_sensitive_and_exact() -> None:
    """No case folding, prefixes or wildcards."""
    lock_target = LockTarget(user="Alice")
    assert not LockTarget(user="alice").matches(lock_target)
    assert not LockTarget(user="Ali").matches(lock_target)
    assert not LockTarget(user="*").matches(lock_target)


@given(lock_targets)
def test_every_single_pair_of_a_target_matches_it(target: LockTarget) -> None:
    """Each single-field query taken from a lock's target matches that lock."""
    for field, value in target.pairs():
        assert LockTarget(**{field: value}).matches(target)


@given(locks)
def test_generated_valid_locks_validate(lock: Lock) -> None:
    """Locks built from the valid-value strategies pass validation (strategy sanity)."""
    lock.validate()

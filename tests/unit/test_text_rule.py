"""The text rule for locks (issue 15, item 10; docs/security.md "Text in locks").

Messages reach users' terminals, so controls (but tab and newline), bidi controls and
line/paragraph separators are refused; target values and names are compared exactly,
so anything that is not plainly visible — format characters (bidi overrides, zero-width,
BOM), separators but the ASCII space (NBSP, U+2028) and blank fillers — is refused.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import ValidationError
from lockd.domain.lock import (
    Lock,
    LockTarget,
    check_lock_text_rules,
    plainly_valid_lock_text,
    validate_name,
)
from tests.unit.strategies import BLANK_FILLERS, T0, names, target_values

REVIEW_VALUES = ["\u202e", "\u200b", "\xa0", "\u2028"]  # the review's target values
REVIEW_MESSAGE_CHARACTERS = ["\x1b", "\x07", "\x00", "\x85", "\x9b"]  # ESC, BEL, NUL, C1

MESSAGE_FORBIDDEN = st.one_of(
    st.characters(max_codepoint=0x1F, exclude_characters="\t\n"),
    st.characters(min_codepoint=0x7F, max_codepoint=0x9F),
    st.sampled_from("\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e")
    | st.sampled_from("\u2066\u2067\u2068\u2069"),
)
VALUE_FORBIDDEN = st.one_of(
    st.characters(categories=("Cc", "Cf", "Zl", "Zp", "Co")),
    st.characters(categories=["Zs"], exclude_characters=" "),
    st.sampled_from(BLANK_FILLERS),
)
MESSAGE_TEXT = st.text(
    st.characters(
        codec="utf-8", exclude_categories=("Cc", "Zl", "Zp", "Cf"), include_characters="\t\n"
    ),
    max_size=40,
)


def _lock(message: str = "", **target: str) -> Lock:
    return Lock("l1", LockTarget(**(target or {"user": "alice"})), message=message, created_at=T0)


@pytest.mark.parametrize("char", REVIEW_MESSAGE_CHARACTERS)
def test_a_message_with_the_reviews_control_characters_is_refused(char: str) -> None:
    """ESC, BEL, NUL and C1 controls in a message are refused, naming the code point."""
    with pytest.raises(ValidationError, match=f"lock message contains U\\+{ord(char):04X}"):
        _lock(f"see {char}[31mred").validate()


@pytest.mark.parametrize("value", REVIEW_VALUES)
def test_a_target_value_with_the_reviews_invisible_characters_is_refused(value: str) -> None:
    """U+202E, U+200B, NBSP and U+2028 in a target value are refused."""
    with pytest.raises(ValidationError, match="lock target user contains control characters"):
        _lock(user=f"ali{value}ce").validate()


@given(prefix=MESSAGE_TEXT, bad=MESSAGE_FORBIDDEN, suffix=MESSAGE_TEXT)
def test_any_message_with_a_forbidden_character_is_refused(
    prefix: str, bad: str, suffix: str
) -> None:
    """Wherever a forbidden character sits in a message, validation refuses it."""
    with pytest.raises(ValidationError, match="lock message contains U\\+"):
        _lock(prefix + bad + suffix).validate()


@given(message=MESSAGE_TEXT)
def test_messages_of_ordinary_text_with_tabs_and_newlines_are_accepted(message: str) -> None:
    """Printable text in any script, tabs and newlines make a valid message."""
    _lock(message).validate()


@given(value=target_values, bad=VALUE_FORBIDDEN, at=st.integers(min_value=0, max_value=12))
def test_any_target_value_with_an_invisible_character_is_refused(
    value: str, bad: str, at: int
) -> None:
    """A control, format, separator or blank character anywhere in a value is refused."""
    with pytest.raises(ValidationError, match="lock target role contains control characters"):
        _lock(role=value[:at] + bad + value[at:]).validate()


@given(value=target_values)
def test_plain_target_values_are_accepted(value: str) -> None:
    """Printable values, the ASCII space included, are valid targets."""
    _lock(device=value).validate()


@given(name=names, bad=VALUE_FORBIDDEN)
def test_names_with_an_invisible_character_are_refused(name: str, bad: str) -> None:
    """Resource names follow the target rule (and refuse the space as well)."""
    with pytest.raises(ValidationError, match="may not contain"):
        validate_name(name + bad, "role")


# Plain ASCII, the same with one character at a rule's edge ('/', ' ', tab, newline,
# DEL, NUL, non-ASCII), or a run of a length at a limit.
_PLAIN = st.text("ab", min_size=1, max_size=4)
_EDGE_STRINGS = st.one_of(
    st.builds(lambda size: "x" * size, st.sampled_from([0, 253, 254, 1024, 1025, 4096, 4097])),
    st.builds(lambda text, char: text + char + text, _PLAIN, st.sampled_from("/ \t\n\x7f\x00é")),
)


@pytest.mark.parametrize("part", ["name", "value", "message", "created_by", "no pairs"])
@given(edge=_EDGE_STRINGS, plain=_PLAIN)
def test_text_the_quick_check_passes_breaks_none_of_the_rules(
    part: str, edge: str, plain: str
) -> None:
    """The one-pass check an agent runs on every lock never accepts what a rule refuses:
    with any one part at a rule's edge, whenever it passes, the rules one by one pass."""
    text = {"name": plain, "value": plain, "message": plain, "created_by": plain, part: edge}
    pairs = () if part == "no pairs" else (("user", "alice"), ("role", text["value"]))
    name, message, created_by = text["name"], text["message"], text["created_by"]
    if plainly_valid_lock_text(name, pairs, message, created_by):
        check_lock_text_rules(name, pairs, message, created_by)


def test_the_quick_check_passes_an_ordinary_lock() -> None:
    """A plain lock takes the quick path (the property above is not vacuous)."""
    assert plainly_valid_lock_text("l1", (("user", "alice"),), "bye", "admin")
    assert not plainly_valid_lock_text("l 1", (("user", "alice"),), "bye", "admin")

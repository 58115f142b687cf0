"""Locking modes: parsing and resolution (SPEC §5)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import ValidationError
from lockd.domain.modes import (
    DEFAULT_LOCKING_MODE,
    LockingMode,
    parse_locking_mode,
    resolve_mode,
)

BEST_EFFORT = LockingMode.BEST_EFFORT
STRICT = LockingMode.STRICT


def test_default_locking_mode_is_best_effort() -> None:
    """best_effort is the cluster default."""
    assert DEFAULT_LOCKING_MODE is BEST_EFFORT


@pytest.mark.parametrize(("text", "mode"), [("strict", STRICT), ("best_effort", BEST_EFFORT)])
def test_parse_locking_mode_accepts_the_two_documented_values(text: str, mode: LockingMode) -> None:
    """`strict` and `best_effort` parse to their modes."""
    assert parse_locking_mode(text) is mode


@pytest.mark.parametrize(
    "text", ["", "Strict", "STRICT", " strict", "strict ", "best-effort", "besteffort", "off"]
)
def test_parse_locking_mode_refuses_other_strings_with_the_exact_message(text: str) -> None:
    """Anything else is `locking mode "<v>" not supported`, value verbatim."""
    with pytest.raises(ValidationError) as caught:
        parse_locking_mode(text)
    assert str(caught.value) == f'locking mode "{text}" not supported'


@pytest.mark.parametrize(("value", "shown"), [(True, "True"), (None, "None"), (1, "1")])
def test_parse_locking_mode_refuses_non_strings(value: object, shown: str) -> None:
    """Non-string values (YAML `lock: yes`) are refused, not crashed on."""
    with pytest.raises(ValidationError, match=f'^locking mode "{shown}" not supported$'):
        parse_locking_mode(value)


@pytest.mark.parametrize("default", list(LockingMode))
def test_no_roles_take_the_cluster_default(default: LockingMode) -> None:
    """An interaction without roles (no user) uses the cluster-wide mode."""
    assert resolve_mode(default, []) is default


@pytest.mark.parametrize("default", list(LockingMode))
def test_roles_without_a_mode_take_the_cluster_default(default: LockingMode) -> None:
    """Roles that leave the mode unset (None) abstain."""
    assert resolve_mode(default, [None, None]) is default


def test_one_strict_role_makes_the_interaction_strict() -> None:
    """A single strict role among others suffices."""
    assert resolve_mode(BEST_EFFORT, [None, BEST_EFFORT, STRICT, BEST_EFFORT]) is STRICT


def test_strict_cluster_default_is_not_relaxed_by_a_best_effort_role() -> None:
    """Cluster strict + role best_effort is strict (lockd follows the documented rule)."""
    assert resolve_mode(STRICT, [BEST_EFFORT]) is STRICT


def test_best_effort_everywhere_is_best_effort() -> None:
    """No strict anywhere: best_effort."""
    assert resolve_mode(BEST_EFFORT, [BEST_EFFORT, None]) is BEST_EFFORT


def test_resolve_mode_accepts_a_one_shot_iterable() -> None:
    """Role modes may come from a generator."""
    assert resolve_mode(BEST_EFFORT, (m for m in [None, STRICT])) is STRICT


@given(
    st.sampled_from(LockingMode),
    st.lists(st.none() | st.sampled_from(LockingMode), max_size=5),
)
def test_strict_iff_a_single_occurrence_of_strict(
    default: LockingMode, roles: list[LockingMode | None]
) -> None:
    """The result is strict exactly when the default or some role is strict."""
    expected = STRICT if default is STRICT or STRICT in roles else BEST_EFFORT
    assert resolve_mode(default, roles) is expected

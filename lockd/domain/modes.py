"""Locking modes and their resolution (SPEC §5).

A single occurrence of strict suffices: the cluster default or any role of the
interaction saying strict makes the interaction strict. Unlike Teleport's code, a role's
best_effort never relaxes a strict cluster default; lockd follows the documented rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from lockd.domain.errors import ValidationError


class LockingMode(StrEnum):
    BEST_EFFORT = "best_effort"
    STRICT = "strict"


DEFAULT_LOCKING_MODE = LockingMode.BEST_EFFORT
_BY_VALUE = {mode.value: mode for mode in LockingMode}


def parse_locking_mode(value: object) -> LockingMode:
    """`strict` or `best_effort`; anything else is `locking mode "<v>" not supported`."""
    if isinstance(value, str) and value in _BY_VALUE:
        return _BY_VALUE[value]
    shown = value if isinstance(value, str) else repr(value)
    raise ValidationError(f'locking mode "{shown}" not supported')


def resolve_mode(
    cluster_default: LockingMode, role_modes: Iterable[LockingMode | None]
) -> LockingMode:
    """Strict if the cluster default or any role is strict; roles without a mode abstain."""
    if cluster_default is LockingMode.STRICT:
        return LockingMode.STRICT
    if any(mode is LockingMode.STRICT for mode in role_modes):
        return LockingMode.STRICT
    return LockingMode.BEST_EFFORT

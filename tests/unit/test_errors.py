"""The error tree: which errors are expected (shown to users) and which are bugs."""

from __future__ import annotations

import pytest

from lockd.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    CompactedError,
    InvariantError,
    LockdError,
    LockedError,
    NotFoundError,
    PreconditionError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)


@pytest.mark.parametrize(
    "error_class",
    [
        ValidationError,
        NotFoundError,
        AlreadyExistsError,
        PreconditionError,
        UnavailableError,
        UnauthenticatedError,
        AccessDeniedError,
    ],
)
def test_expected_errors_carry_their_text_as_message(error_class: type[LockdError]) -> None:
    """Each expected error is a LockdError whose .message is its text."""
    error = error_class("something went wrong")
    assert isinstance(error, LockdError)
    assert error.message == "something went wrong"


def test_locked_error_is_an_access_denial_with_the_lock_name() -> None:
    """LockedError maps like AccessDeniedError and names the lock that hit."""
    error = LockedError('lock targeting User:"alice" is in force', "l1")
    assert isinstance(error, AccessDeniedError)
    assert error.lock_name == "l1"
    assert error.message == 'lock targeting User:"alice" is in force'


def test_compacted_error_is_a_precondition_error() -> None:
    """A compacted log is a failed precondition (the caller must resync)."""
    assert issubclass(CompactedError, PreconditionError)


def test_invariant_error_is_not_an_expected_error() -> None:
    """Bugs are never LockdErrors, so they are never shown to users as such."""
    assert not issubclass(InvariantError, LockdError)

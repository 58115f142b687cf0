"""The one error tree of lockd.

Two families:

* ``LockdError`` and its subclasses are *expected* errors: a caller asked for something
  the rules refuse, or a dependency is unavailable. They carry a message fit to show to
  the user as is, and the API layer maps each class to one gRPC status code
  (``lockd.wire.status_table``):

  ===========================  ====================
  class                        gRPC status
  ===========================  ====================
  ``ValidationError``          INVALID_ARGUMENT
  ``NotFoundError``            NOT_FOUND
  ``AlreadyExistsError``       ALREADY_EXISTS
  ``PreconditionError``        FAILED_PRECONDITION
  ``UnavailableError``         UNAVAILABLE
  ``UnauthenticatedError``     UNAUTHENTICATED
  ``AccessDeniedError``        PERMISSION_DENIED
  ``LockedError``              PERMISSION_DENIED
  ===========================  ====================

* ``InvariantError`` (and any other exception) is a *bug*: state that the code believes
  impossible. It maps to INTERNAL, is logged with its traceback, and is never shown to
  the user in detail.
"""

from __future__ import annotations


class LockdError(Exception):
    """An expected error whose message is meant for the user."""

    @property
    def message(self) -> str:
        return str(self)


class ValidationError(LockdError):
    """Input breaks a rule: nothing was stored."""


class NotFoundError(LockdError):
    """The named resource does not exist."""


class AlreadyExistsError(LockdError):
    """A resource with that name exists and the call may not replace it."""


class PreconditionError(LockdError):
    """The system is not in a state where the request can run (e.g. a stale revision)."""


class UnavailableError(LockdError):
    """A dependency (the store, the auth server) cannot serve now; retrying may help."""


class DeadlineError(UnavailableError):
    """A call got no answer within its deadline (the server may be stalled)."""


class UnauthenticatedError(LockdError):
    """The caller did not prove who it is."""


class AccessDeniedError(LockdError):
    """The caller is known but may not do this."""


class LockedError(AccessDeniedError):
    """The caller's identity is hit by a lock in force; the message is SPEC §3's."""

    def __init__(self, message: str, lock_name: str) -> None:
        super().__init__(message)
        self.lock_name = lock_name


class InvariantError(Exception):
    """A bug: the code reached a state it believes impossible."""


class CompactedError(PreconditionError):
    """The asked-for revision is older than the retained event log."""

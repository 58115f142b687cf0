"""The one table from domain errors to gRPC status codes, and back for clients.

Expected errors (`LockdError`) keep their message; anything else is a bug: it is logged
with its traceback and the caller sees INTERNAL with a generic message.
"""

from __future__ import annotations

import grpc
import structlog

from lockd.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    DeadlineError,
    LockdError,
    LockedError,
    NotFoundError,
    PreconditionError,
    UnauthenticatedError,
    UnavailableError,
    ValidationError,
)

# Most specific first: LockedError is an AccessDeniedError.
STATUS_BY_ERROR: tuple[tuple[type[LockdError], grpc.StatusCode], ...] = (
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (PreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (LockedError, grpc.StatusCode.PERMISSION_DENIED),
    (AccessDeniedError, grpc.StatusCode.PERMISSION_DENIED),
)
INTERNAL_MESSAGE = "internal error (see the server log)"

_log = structlog.get_logger("lockd.api")


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller sees for `error`."""
    for error_type, code in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code, str(error)
    _log.error("unexpected error", exc_info=error)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def error_for(code: grpc.StatusCode, message: str) -> LockdError:
    """The domain error a client raises for a failed call (the table read backwards)."""
    if code is grpc.StatusCode.PERMISSION_DENIED:
        return AccessDeniedError(message)
    for error_type, mapped in STATUS_BY_ERROR:
        if mapped is code:
            return error_type(message)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineError(f"no answer within the deadline ({message or code.name.lower()})")
    if code is grpc.StatusCode.CANCELLED:
        return UnavailableError(message or code.name.lower())
    return LockdError(f"{code.name}: {message}")

"""Exit codes and the CLI's own error types.

Exit codes (SPEC §7): 0 ok, 1 operational or remote error, 2 usage or validation error.
Every `ValidationError`, local or reported by the server, exits 2; every other
`LockdError` (not found, already exists, access denied, locked, unreachable) exits 1.
"""

from __future__ import annotations

from lockd.domain.errors import LockdError, ValidationError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValidationError):
    """The command line itself is wrong (a flag, a reference, a file that cannot be read)."""


class OperationError(LockdError):
    """An operation did not achieve its goal (e.g. agents did not confirm in time)."""


def exit_code_for(error: LockdError) -> int:
    return EXIT_USAGE if isinstance(error, ValidationError) else EXIT_FAILURE

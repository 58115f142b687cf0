"""Aligned text tables (`--format text`, `lockctl status`), in the style of tctl's.

A header row, a row of dashes under it, columns separated by two spaces, no trailing
whitespace. Cells are made single-line: control characters (a newline in a lock
message) are shown escaped, so one resource is always one line.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime

from lockd.domain.lock import Lock
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ClusterAuthPreference, Role, Rule, User
from lockd.domain.timeparse import format_rfc3339

COLUMN_GAP = "  "
NEVER = "never"


def cell(text: str) -> str:
    """`text` on one line: control characters escaped (`\\n`, `\\t`, `\\x1b`)."""
    if all(ch.isprintable() for ch in text):
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch) or ascii(ch)[1:-1]


def width(text: str) -> int:
    """Columns `text` takes on a terminal (wide East Asian characters take two)."""
    return sum(
        0
        if unicodedata.combining(ch)
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table as text, ending with a newline; a header and dashes even with no rows."""
    cells = [[cell(value) for value in row] for row in rows]
    widths = [width(header) for header in headers]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the table {len(headers)} columns")
        widths = [max(current, width(value)) for current, value in zip(widths, row, strict=True)]
    lines = [
        _line(headers, widths),
        _line(["-" * w for w in widths], widths),
        *(_line(row, widths) for row in cells),
    ]
    return "".join(line + "\n" for line in lines)


def render_pairs(pairs: Sequence[tuple[str, str]], gap: str = " ") -> str:
    """Label/value lines with the values aligned, as tctl status prints them."""
    label_width = max((width(label) for label, _ in pairs), default=0)
    return "".join(
        f"{label}{' ' * (label_width - width(label))}{gap}{cell(value)}".rstrip() + "\n"
        for label, value in pairs
    )


def _line(values: Sequence[str], widths: Sequence[int]) -> str:
    padded = [value + " " * (w - width(value)) for value, w in zip(values, widths, strict=True)]
    return COLUMN_GAP.join(padded).rstrip()


# -- resources -------------------------------------------------------------------------

LOCK_HEADERS = ("ID", "Target", "Message", "Expires")
ROLE_HEADERS = ("Name", "Allow", "Deny", "Lock Mode")
USER_HEADERS = ("Name", "Roles")
CAP_HEADERS = ("Name", "Locking Mode", "Effective Mode")


def expires_text(moment: datetime | None) -> str:
    return NEVER if moment is None else format_rfc3339(moment)


def lock_row(lock: Lock) -> list[str]:
    return [lock.name, lock.target.describe(), lock.message, expires_text(lock.expires)]


def locks_table(locks: Sequence[Lock]) -> str:
    return render_table(LOCK_HEADERS, [lock_row(lock) for lock in locks])


def _rules_text(rules: Sequence[Rule]) -> str:
    return "; ".join(f"{','.join(r.resources)}: {','.join(r.verbs)}" for r in rules)


def roles_table(roles: Sequence[Role]) -> str:
    rows = [
        [
            role.name,
            _rules_text(role.allow),
            _rules_text(role.deny),
            role.lock_mode.value if role.lock_mode is not None else "",
        ]
        for role in roles
    ]
    return render_table(ROLE_HEADERS, rows)


def users_table(users: Sequence[User]) -> str:
    return render_table(USER_HEADERS, [[user.name, ",".join(user.roles)] for user in users])


def cap_table(cap: ClusterAuthPreference, effective: LockingMode) -> str:
    note = "" if effective is cap.locking_mode else " (set in the auth server's config)"
    return render_table(CAP_HEADERS, [[cap.name, cap.locking_mode.value, effective.value + note]])

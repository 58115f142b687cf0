"""The lock resource: targets, validation, the in-force rule and the user-facing messages.

Everything here follows SPEC §1–§3 to the byte: field order, CamelCase names in target
strings, and the exact error and refusal texts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from lockd.domain.errors import ValidationError

# Section 1 order: target strings and documents list fields in this order.
TARGET_FIELDS: tuple[str, ...] = (
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

TARGET_FIELD_TITLES: dict[str, str] = {
    "user": "User",
    "role": "Role",
    "login": "Login",
    "mfa_device": "MFADevice",
    "device": "Device",
    "server_id": "ServerID",
    "windows_desktop": "WindowsDesktop",
    "access_request": "AccessRequest",
    "bot_instance_id": "BotInstanceID",
    "join_token": "JoinToken",
}

MAX_MESSAGE_BYTES = 4096
MAX_NAME_LENGTH = 253
MAX_TARGET_VALUE_LENGTH = 1024

STRICT_LOCKOUT_MESSAGE = "preventive lock-out due to local lock view becoming unreliable"
EMPTY_TARGET_MESSAGE = "at least one target field must be set"

TargetPair = tuple[str, str]

# The text rule (docs/security.md, "Text in locks"). Lock messages reach users'
# terminals through sidecars, and target values and names are compared byte for byte,
# so text that displays as something else is refused:
# * messages: no C0 control but tab and newline, no DEL, no C1 control, no bidi
#   embedding/override/isolate or mark, no line/paragraph separator (U+2028/U+2029);
# * target values and names: printable characters only (str.isprintable: no control,
#   format — bidi, zero-width, BOM, soft hyphen —, separator but the ASCII space,
#   unassigned or private-use code point), and none of the printable-but-blank fillers.
# Checked on every lock an agent receives: regular expressions and C string methods,
# not loops over characters, and for ASCII text (`str.isascii` is a flag CPython keeps)
# only what ASCII can contain: no surrogates, blank fillers or non-ASCII controls.
_MESSAGE_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)
_BLANK_FILLERS = re.compile("[\u115f\u1160\u2800\u3164\uffa0]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def is_plain_text(value: str) -> bool:
    """Whether a target value or name may be stored: printable, no blank fillers."""
    if value.isascii():
        return value.isprintable()
    return value.isprintable() and _BLANK_FILLERS.search(value) is None


def forbidden_in_message(message: str) -> str | None:
    """The first character a lock message may not contain, or None."""
    found = _MESSAGE_FORBIDDEN.search(message)
    return None if found is None else found.group()


def access_denied_message(verb: str, resource: str) -> str:
    """The refusal for a missing permission (SPEC §3)."""
    return f'access denied to perform action "{verb}" on "{resource}"'


def quote(value: str) -> str:
    """Double-quote a value the way Go's %q does for printable text."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class LockTarget:
    """What a lock hits: each non-empty field is one (field, value) pair."""

    user: str = ""
    role: str = ""
    login: str = ""
    mfa_device: str = ""
    device: str = ""
    server_id: str = ""
    windows_desktop: str = ""
    access_request: str = ""
    bot_instance_id: str = ""
    join_token: str = ""

    def pairs(self) -> tuple[TargetPair, ...]:
        """The non-empty (field, value) pairs in section 1 order (TARGET_FIELDS).

        Written out field by field: it runs for every lock indexed, matched or checked.
        """
        pairs: list[TargetPair] = []
        if self.user:
            pairs.append(("user", self.user))
        if self.role:
            pairs.append(("role", self.role))
        if self.login:
            pairs.append(("login", self.login))
        if self.mfa_device:
            pairs.append(("mfa_device", self.mfa_device))
        if self.device:
            pairs.append(("device", self.device))
        if self.server_id:
            pairs.append(("server_id", self.server_id))
        if self.windows_desktop:
            pairs.append(("windows_desktop", self.windows_desktop))
        if self.access_request:
            pairs.append(("access_request", self.access_request))
        if self.bot_instance_id:
            pairs.append(("bot_instance_id", self.bot_instance_id))
        if self.join_token:
            pairs.append(("join_token", self.join_token))
        return tuple(pairs)

    def is_empty(self) -> bool:
        return not self.pairs()

    def matches(self, lock_target: LockTarget) -> bool:
        """Whether this *query* target matches a lock's target (SPEC §2).

        Every non-empty field of the query must equal the lock's field; an empty query
        matches nothing.
        """
        query = self.pairs()
        return bool(query) and all(getattr(lock_target, f) == v for f, v in query)

    def describe(self) -> str:
        """`User:"alice" Role:"dev"`: the target part of the in-force message."""
        return " ".join(f"{TARGET_FIELD_TITLES[f]}:{quote(v)}" for f, v in self.pairs())

    def as_dict(self) -> dict[str, str]:
        """Non-empty fields only, in section 1 order."""
        return dict(self.pairs())

    @classmethod
    def from_pairs(cls, pairs: dict[str, str]) -> LockTarget:
        unknown = sorted(set(pairs) - set(TARGET_FIELDS))
        if unknown:
            raise ValidationError(f"unknown lock target field {unknown[0]!r}")
        return cls(**pairs)

    def validate(self) -> None:
        validate_target_pairs(self.pairs())


def validate_target_pairs(pairs: tuple[TargetPair, ...]) -> None:
    """Raise ValidationError unless `pairs` (a target's) are a valid lock target."""
    if not pairs:
        raise ValidationError(EMPTY_TARGET_MESSAGE)
    for name, value in pairs:
        if len(value) > MAX_TARGET_VALUE_LENGTH:
            raise ValidationError(
                f"lock target {name} is longer than {MAX_TARGET_VALUE_LENGTH} characters"
            )
        if not _is_unicode_text(value):
            raise ValidationError(f"lock target {name} is not valid Unicode text")
        if not is_plain_text(value):
            raise ValidationError(
                f"lock target {name} contains control characters ({_first_unplain(value)}:"
                " control, format, separator and blank characters are refused)"
            )


def _is_unicode_text(text: str) -> bool:
    """False for strings with lone surrogates (JSON `"\\ud800"`), which UTF-8 cannot carry."""
    return text.isascii() or _SURROGATE.search(text) is None


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _first_unplain(value: str) -> str:
    """`U+202E`: the first character `is_plain_text` refuses, for the error message."""
    bad = next(char for char in value if not is_plain_text(char))
    return f"U+{ord(bad):04X}"


def validate_name(name: str, kind: str) -> None:
    """Resource names: 1–253 printable characters, no whitespace and no '/'.

    '/' is refused because CLI references are `kind/name`.
    """
    if not name:
        raise ValidationError(f"{kind} name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(f"{kind} name is longer than {MAX_NAME_LENGTH} characters")
    # Every whitespace character but the space is also unprintable (Unicode Zs, Zl, Zp,
    # Cc), so this is "a '/', a whitespace or an unprintable character".
    if "/" in name or " " in name or not is_plain_text(name):
        raise ValidationError(
            f"{kind} name {quote(name)} may not contain '/', whitespace or control characters"
            " (nor format or blank ones)"
        )


@dataclass(frozen=True, slots=True)
class Lock:
    """A lock: who it targets, why, and until when (None: until removed)."""

    name: str
    target: LockTarget
    message: str = ""
    expires: datetime | None = None
    created_at: datetime | None = None
    created_by: str = ""

    def in_force(self, now: datetime) -> bool:
        """In force at `now` iff it never expires or `now < expires`."""
        return self.expires is None or now < self.expires

    def in_force_message(self) -> str:
        """`lock targeting User:"foo" is in force: <message>` (SPEC §3)."""
        text = f"lock targeting {self.target.describe()} is in force"
        return f"{text}: {self.message}" if self.message else text

    def validate(self) -> None:
        """Raise ValidationError naming the first broken rule of SPEC §1."""
        validate_lock_text(self.name, self.target.pairs(), self.message, self.created_by)
        for label, moment in (("expires", self.expires), ("created_at", self.created_at)):
            if moment is not None and moment.utcoffset() is None:
                raise ValidationError(f"lock {label} must carry a time zone")


def validate_lock_text(
    name: str, pairs: tuple[TargetPair, ...], message: str, created_by: str
) -> None:
    """The rules of SPEC §1 on a lock's text: its name, target pairs, message and
    creator (`Lock.validate`, and the agent's records made straight from the wire)."""
    if not plainly_valid_lock_text(name, pairs, message, created_by):
        check_lock_text_rules(name, pairs, message, created_by)


def check_lock_text_rules(
    name: str, pairs: tuple[TargetPair, ...], message: str, created_by: str
) -> None:
    """`validate_lock_text` rule by rule: raises on the first one broken."""
    validate_name(name, "lock")
    validate_target_pairs(pairs)
    for label, text in (("message", message), ("created_by", created_by)):
        if not _is_unicode_text(text):
            raise ValidationError(f"lock {label} is not valid Unicode text")
    if _utf8_length(message) > MAX_MESSAGE_BYTES:
        raise ValidationError(f"lock message is longer than {MAX_MESSAGE_BYTES} bytes")
    bad = forbidden_in_message(message)
    if bad is not None:
        raise ValidationError(
            f"lock message contains U+{ord(bad):04X}: control characters (but tab and "
            "newline), bidirectional controls and line/paragraph separators are refused"
        )


def plainly_valid_lock_text(
    name: str, pairs: tuple[TargetPair, ...], message: str, created_by: str
) -> bool:
    """True only for text every rule of `check_lock_text_rules` accepts: printable
    ASCII throughout, within the lengths, a name without '/' or ' '. Nearly every lock
    is such text, and this is a handful of C string methods on one joined string;
    False sends the lock through the rules one by one, which name the first broken."""
    joined = name + message + created_by
    for _, value in pairs:
        joined += value
    return joined.isascii() and joined.isprintable() and plain_lock_shape(name, pairs, message)


def plain_lock_shape(name: str, pairs: tuple[TargetPair, ...], message: str) -> bool:
    """For text already known to be printable ASCII: whether it is a valid lock's —
    a target, the lengths within the limits, a name without '/' or ' '."""
    for _, value in pairs:
        if len(value) > MAX_TARGET_VALUE_LENGTH:
            return False
    return (
        bool(pairs)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and len(message) <= MAX_MESSAGE_BYTES
        and "/" not in name
        and " " not in name
    )

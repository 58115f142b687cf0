"""A lock as one line of text: the form an agent files it in, and may receive it in.

`LockTable` keeps each lock as a record (lockd.domain.lock_table); the packed form is
the lock's name, a NUL, then that very record, in UTF-8:

    name NUL message NUL created_by NUL expires NUL created_at (NUL code NUL value)+

Times are microseconds since 1970 (UTC) in lowercase hexadecimal, empty when unset;
each target pair is its field's code (`a` user, `b` role, … `j` join_token: the order
of `TARGET_FIELDS`) and its non-empty value, in that order, each field at most once.
An agent that asks for it (WatchHello.packed_locks; docs/protocol.md "Packed locks")
receives locks so, and files each one after one split and one check of its text
instead of decoding a protobuf Lock field by field (docs/benchmarks.md). The form is
canonical — one lock, one packed form — so a packed lock is the record the table
would make of the same `Lock`, byte for byte, and anything else is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from lockd.domain.errors import ValidationError
from lockd.domain.lock import Lock, TargetPair, plain_lock_shape, validate_lock_text
from lockd.domain.lock_table import (
    CODE_FIELDS,
    SEPARATOR,
    PackedLock,
    PackedRun,
    empty_run,
    encode,
)
from lockd.domain.unix_micros import from_micros, to_micros

# The times a Timestamp (and a datetime) can hold: 0001-01-01 to 9999-12-31, in µs.
MIN_MICROS = to_micros(datetime(1, 1, 1, tzinfo=UTC))
MAX_MICROS = to_micros(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
_FIXED_FIELDS = 5  # name, message, created_by, expires, created_at
# Between a chunk's packed locks when they are checked together (`from_packed_forms`):
# RS, which no lock's name, message or target may hold (a creator may: see there).
_CHUNK_SEPARATOR_TEXT = "\x1e"
_CHUNK_SEPARATOR = _CHUNK_SEPARATOR_TEXT.encode()


def packed_form(lock: Lock) -> bytes | None:
    """The packed form of `lock`; None when it has none (a creator containing NUL, a
    time not in UTC): send that one as a protobuf Lock."""
    record = encode(lock)
    if isinstance(record, Lock):
        return None
    return lock.name.encode() + b"\x00" + record


def from_packed_form(data: bytes) -> PackedLock:
    """The lock `packed_form` made `data` of, validated as any received lock is (the
    text rule of lockd.domain.lock); ValidationError for anything else."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValidationError("packed lock is not valid UTF-8") from None
    parts = text.split(SEPARATOR)
    if len(parts) < _FIXED_FIELDS + 2 or len(parts) % 2 == 0:
        raise ValidationError(
            "packed lock: expected name, message, created_by, expires, created_at and"
            " target pairs separated by NUL"
        )
    name, message, created_by, expires, created = parts[:_FIXED_FIELDS]
    pairs: tuple[TargetPair, ...]
    if len(parts) == _FIXED_FIELDS + 2 and parts[-1] and parts[-2] in CODE_FIELDS:
        pairs = ((CODE_FIELDS[parts[-2]], parts[-1]),)  # one pair, as most locks have
    else:
        pairs = _pairs(parts)
    validate_lock_text(name, pairs, message, created_by)
    expires_us = _micros(expires, "expires") if expires else None
    return PackedLock(
        name,
        data[data.index(b"\x00") + 1 :],  # the record: all after the name
        pairs,
        None if expires_us is None else from_micros(expires_us),
        _micros(created, "created_at") if created else None,
    )


def from_packed_forms(datas: Sequence[bytes]) -> PackedRun:
    """`from_packed_form` of each (a snapshot chunk's), as a run, with the text checked
    once for them all: one join, one decode and one scan when the chunk is printable
    ASCII, as nearly every one is; then each lock needs only its split and its limits.
    Any other chunk, and any lock not of one target field, goes lock by lock (the exact
    error)."""
    run = empty_run()
    try:
        text: str | None = _CHUNK_SEPARATOR.join(datas).decode()
    except UnicodeDecodeError:
        text = None
    entries = [] if text is None else text.split(_CHUNK_SEPARATOR_TEXT)
    plain = (
        text is not None
        and len(entries) == len(datas)  # no creator held the separator
        and text.isascii()
        and text.replace(SEPARATOR, "").replace(_CHUNK_SEPARATOR_TEXT, "").isprintable()
    )
    if not plain:
        for data in datas:
            run.append(from_packed_form(data))  # raises for the first bad one
        return run
    names, records, pairs_of, expiring, created_of = run
    for data, entry in zip(datas, entries, strict=True):
        parts = entry.split(SEPARATOR)
        field = CODE_FIELDS.get(parts[-2]) if len(parts) == _FIXED_FIELDS + 2 else None
        if field is None:
            run.append(from_packed_form(data))
            continue
        name, message, _, expires, created, _, value = parts
        pairs = ((field, value),)
        if not (value and plain_lock_shape(name, pairs, message)):
            run.append(from_packed_form(data))
            continue
        names.append(name)
        records.append(data[len(name) + 1 :])  # ASCII: the name's length in bytes
        pairs_of.append(pairs)
        expiring.append(from_micros(_micros(expires, "expires")) if expires else None)
        created_of.append(_micros(created, "created_at") if created else None)
    return run


def _pairs(parts: list[str]) -> tuple[TargetPair, ...]:
    """The target pairs after the fixed fields: known codes, ascending, values set."""
    codes, values = parts[_FIXED_FIELDS::2], parts[_FIXED_FIELDS + 1 :: 2]
    for index, (code, value) in enumerate(zip(codes, values, strict=True)):
        if code not in CODE_FIELDS:
            raise ValidationError(f"packed lock: unknown target field code {code!r}")
        if index and not codes[index - 1] < code:
            raise ValidationError("packed lock: target fields out of order or repeated")
        if not value:
            raise ValidationError(f"packed lock: target {CODE_FIELDS[code]} is empty")
    return tuple(zip([CODE_FIELDS[code] for code in codes], values, strict=True))


def _micros(text: str, label: str) -> int:
    """A packed time's microseconds (`text` is not empty), canonical and in range."""
    try:
        micros = int(text, 16)
    except ValueError:
        micros = None
    if micros is None or format(micros, "x") != text:
        raise ValidationError(f"packed lock: {label} {text!r} is not lowercase hexadecimal")
    if not MIN_MICROS <= micros <= MAX_MICROS:
        raise ValidationError(
            f"packed lock: {label} {text} out of range (0001-01-01 to 9999-12-31, UTC)"
        )
    return micros

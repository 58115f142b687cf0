"""Value readers: each checks one key's type and value and names its path in errors."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path

from lockd.config.model import DEFAULT_SOCKET_MODE, MAX_SERVER_ID_LENGTH
from lockd.config.yaml_loader import YamlInt
from lockd.domain.addresses import parse_host_port
from lockd.domain.errors import ValidationError
from lockd.domain.timeparse import format_duration, parse_duration


def config_error(path: str, message: str) -> ValidationError:
    return ValidationError(f"{path}: {message}" if path else message)


def key_path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def describe(value: object) -> str:
    """What YAML made of a value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, YamlInt):
        return f"number {value.text}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, datetime | date):
        return f"a date ({value.isoformat()})"
    return type(value).__name__


def read_section(value: object, path: str, known: tuple[str, ...]) -> Mapping[str, object]:
    """A mapping with only `known` keys; null (a section with every child commented out)
    counts as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        where = path or "config"
        raise config_error(where, f"must be a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise config_error(
                key_path(path, str(key)),
                f"key {describe(key)} is not a string (YAML reads yes/no/on/off as booleans; "
                "quote it)",
            )
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f'; did you mean "{close[0]}"?' if close else f" (known keys: {', '.join(known)})"
            )
            raise config_error(key_path(path, key), f"unknown key{hint}")
    return value


def read_string(section: Mapping[str, object], key: str, prefix: str, default: str) -> str:
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, Path):
        return str(value)
    if not isinstance(value, str):
        hint = ""
        if isinstance(value, bool):
            hint = " (YAML reads yes/no/on/off/true/false as booleans; quote the value)"
        elif isinstance(value, int | float):
            hint = " (quote the value)"
        raise config_error(key_path(prefix, key), f"must be a string, got {describe(value)}{hint}")
    return value


def read_bool(section: Mapping[str, object], key: str, prefix: str, default: bool) -> bool:
    if key not in section:
        return default
    value = section[key]
    if not isinstance(value, bool):
        raise config_error(key_path(prefix, key), f"must be true or false, got {describe(value)}")
    return value


def read_choice(
    section: Mapping[str, object],
    key: str,
    prefix: str,
    choices: tuple[str, ...],
    default: str,
    what: str,
) -> str:
    value = read_string(section, key, prefix, default)
    if value not in choices:
        raise config_error(
            key_path(prefix, key),
            f'{what} "{value}" not supported (supported: {", ".join(choices)})',
        )
    return value


def read_path(
    section: Mapping[str, object], key: str, prefix: str, data_dir: Path, default: str
) -> Path:
    text = read_string(section, key, prefix, default)
    if not text:
        raise config_error(key_path(prefix, key), "must not be empty")
    return in_data_dir(text, data_dir)


def in_data_dir(text: str, data_dir: Path) -> Path:
    return Path(os.path.abspath(data_dir / text))


def read_duration(
    section: Mapping[str, object],
    key: str,
    prefix: str,
    default: timedelta,
    minimum: timedelta,
    maximum: timedelta | None,
) -> timedelta:
    path = key_path(prefix, key)
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, bool) or not isinstance(value, str | int | float):
        raise config_error(path, f"must be a duration such as 5s or 1m30s, got {describe(value)}")
    else:
        text = value.text if isinstance(value, YamlInt) else str(value)
        try:
            duration = parse_duration(text)
        except ValidationError as error:
            raise config_error(path, str(error)) from None
    shown = format_duration(duration)
    if duration < minimum:
        raise config_error(path, f"{shown} is shorter than the minimum {format_duration(minimum)}")
    if maximum is not None and duration > maximum:
        raise config_error(path, f"{shown} is longer than the maximum {format_duration(maximum)}")
    return duration


def read_address(
    section: Mapping[str, object],
    key: str,
    prefix: str,
    default: str,
    *,
    allow_empty: bool = False,
) -> str:
    path = key_path(prefix, key)
    if key in section and not isinstance(section[key], str):
        raise config_error(path, f"must be a host:port string, got {describe(section[key])}")
    value = read_string(section, key, prefix, default)
    if not value and allow_empty:
        return value
    check_address(value, path, dialing=False)
    return value


def check_address(value: str, path: str, *, dialing: bool) -> None:
    """host:port with a non-empty host ([v6] in brackets) and a port in range.

    Port 0 (any free port) is allowed where lockd listens, not where it dials.
    """
    try:
        parse_host_port(value, allow_port_zero=not dialing)
    except ValidationError as error:
        raise config_error(path, f'invalid address "{value}": {error}') from None


def read_socket_mode(section: Mapping[str, object], prefix: str) -> int:
    path = f"{prefix}.socket_mode"
    if "socket_mode" not in section:
        return DEFAULT_SOCKET_MODE
    value = section["socket_mode"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise config_error(path, f'must be an octal mode such as "0660", got {describe(value)}')
    if isinstance(value, str):
        digits = value.removeprefix("0o")
        if not digits or any(ch not in "01234567" for ch in digits):
            raise config_error(path, f'invalid mode "{value}": want octal digits, e.g. "0660"')
        mode = int(digits, 8)
    else:
        spelled = value.text if isinstance(value, YamlInt) else None
        if spelled is not None and value != 0 and not spelled.startswith("0"):
            raise config_error(
                path,
                f"{spelled} is read as a decimal number; write the mode in octal, "
                'e.g. 0660 or "0660"',
            )
        mode = int(value)
    if not 0 <= mode <= 0o777:
        raise config_error(path, f"mode {mode:#o} is not a permission mode (0000..0777)")
    if mode & 0o600 != 0o600:
        raise config_error(path, f"mode {mode:04o} must let the owner read and write (0600)")
    return mode


def check_cluster_name(name: str) -> None:
    if not name:
        raise config_error("cluster_name", "must not be empty")
    if len(name) > 253 or any(ch.isspace() or not ch.isprintable() or ch == "/" for ch in name):
        raise config_error(
            "cluster_name",
            f'"{name}" must be at most 253 characters, without "/", whitespace or '
            "control characters",
        )


def server_id_problem(server_id: str) -> str | None:
    if not server_id:
        return "server_id must not be empty"
    if len(server_id) > MAX_SERVER_ID_LENGTH:
        return f"server_id is longer than {MAX_SERVER_ID_LENGTH} characters"
    if any(ch.isspace() or not ch.isprintable() or ch == "/" for ch in server_id):
        return f'server_id "{server_id}" may not contain "/", whitespace or control characters'
    return None

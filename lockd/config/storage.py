"""`auth_service.storage`: which store the auth server keeps its state in, and how to
reach PostgreSQL when that is the store (docs/config.md lists every key).

A PostgreSQL DSN is checked here, at start, so a typo is a clear error naming the key
rather than a driver traceback later; the password is read here too (from a file or an
environment variable, never required in the config itself), and a file or variable that
is missing or empty is an error at start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lockd.config.model import STORAGE_TYPES, StorageConfig
from lockd.config.readers import (
    config_error,
    describe,
    key_path,
    read_choice,
    read_duration,
    read_path,
    read_section,
    read_string,
)
from lockd.config.yaml_loader import YamlInt
from lockd.store.postgres import SSL_MODES, PostgresOptions

_SQLITE_KEYS = ("type", "path")
_POSTGRES_KEYS = (
    "dsn",
    "password_file",
    "password_env",
    "pool_min_size",
    "pool_max_size",
    "statement_timeout",
    "connect_timeout",
    "sslmode",
    "root_cert",
)
# DSN query parameters that have a key of their own here: one place for each setting.
_OWN_KEYS = {
    "sslmode": "sslmode",
    "sslrootcert": "root_cert",
    "password": "password_file or password_env",
    "passfile": "password_file",
}
_MAX_POOL = 1000
_DEFAULT_TIMEOUT = timedelta(seconds=5)
_MIN_TIMEOUT = timedelta(milliseconds=100)
_MAX_TIMEOUT = timedelta(minutes=10)


def read_storage(value: object, prefix: str, data_dir: Path) -> StorageConfig:
    section = read_section(value, prefix, _SQLITE_KEYS + _POSTGRES_KEYS)
    store_type = read_choice(section, "type", prefix, STORAGE_TYPES, "sqlite", "storage type")
    path = read_path(section, "path", prefix, data_dir, "lockd.db")
    if store_type != "postgres":
        for key in _POSTGRES_KEYS:
            if key in section:
                raise config_error(key_path(prefix, key), "only for storage type postgres")
        return StorageConfig(type=store_type, path=path)
    return StorageConfig(type=store_type, path=path, postgres=_postgres(section, prefix, data_dir))


def _postgres(section: Mapping[str, object], prefix: str, data_dir: Path) -> PostgresOptions:
    dsn = read_string(section, "dsn", prefix, "")
    dsn_password = check_dsn(dsn, key_path(prefix, "dsn"))
    password = _password(section, prefix, data_dir, dsn_password)
    min_pool = _count(section, "pool_min_size", prefix, 2, minimum=0)
    max_pool = _count(section, "pool_max_size", prefix, 10, minimum=1)
    if min_pool > max_pool:
        raise config_error(
            key_path(prefix, "pool_min_size"),
            f"{min_pool} is larger than pool_max_size ({max_pool})",
        )
    sslmode = read_choice(section, "sslmode", prefix, SSL_MODES, "verify-full", "sslmode")
    root_cert = None
    if "root_cert" in section:
        root_cert = read_path(section, "root_cert", prefix, data_dir, "")
        if sslmode not in ("verify-ca", "verify-full"):
            raise config_error(
                key_path(prefix, "root_cert"),
                f"is only used with sslmode verify-ca or verify-full (sslmode is {sslmode})",
            )
        if not root_cert.is_file():
            raise config_error(key_path(prefix, "root_cert"), f"no such file: {root_cert}")

    def seconds(key: str) -> float:
        limits = (_DEFAULT_TIMEOUT, _MIN_TIMEOUT, _MAX_TIMEOUT)
        return read_duration(section, key, prefix, *limits).total_seconds()

    return PostgresOptions(
        dsn=dsn,
        password=password,
        min_pool=min_pool,
        max_pool=max_pool,
        statement_timeout=seconds("statement_timeout"),
        connect_timeout=seconds("connect_timeout"),
        sslmode=sslmode,
        root_cert=root_cert,
    )


def check_dsn(dsn: str, path: str) -> str | None:
    """Refuse a DSN the driver could not use, naming what is wrong; its password, if any.

    Several comma-separated hosts are allowed (asyncpg tries them in turn; with
    `?target_session_attrs=read-write` it settles on the primary after a failover)."""
    if not dsn:
        raise config_error(path, "required for storage type postgres (postgresql://host/db)")
    try:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        hosts = [_check_host(spec) for spec in parts.netloc.rpartition("@")[2].split(",")]
    except ValueError as error:
        raise config_error(path, f"not a valid PostgreSQL URL: {error}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise config_error(
            path, "must be a URL: postgresql://[user@]host[:port]/database (not key=value)"
        )
    if not any(hosts) and not query.get("host"):
        raise config_error(path, "names no host (postgresql://HOST[:PORT]/DATABASE)")
    if parts.path in ("", "/"):
        raise config_error(path, "names no database (postgresql://host/DATABASE)")
    for parameter, own in _OWN_KEYS.items():
        if parameter in query:
            raise config_error(path, f'set "{parameter}" with storage key {own}, not in the DSN')
    return parts.password


def _check_host(spec: str) -> str:
    """One `host[:port]` of the DSN's host list (several for failover); the host."""
    host, port = spec, ""
    if spec.startswith("["):  # [IPv6]:port
        host, _, rest = spec[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad host {spec!r}")
        port = rest[1:]
    elif ":" in spec:
        host, _, port = spec.rpartition(":")
    if ":" in port or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"port {port!r} of {spec!r} is not a number from 1 to 65535")
    return host


def _password(
    section: Mapping[str, object], prefix: str, data_dir: Path, dsn_password: str | None
) -> str | None:
    given = [key for key in ("password_file", "password_env") if key in section]
    if len(given) > 1 or (given and dsn_password):
        also = "password_env" if len(given) > 1 else "a password in the dsn"
        raise config_error(key_path(prefix, given[0]), f"give the password once (also {also})")
    if "password_file" in section:
        file = read_path(section, "password_file", prefix, data_dir, "")
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise config_error(
                key_path(prefix, "password_file"), f"cannot read {file}: {error}"
            ) from None
        password = text.rstrip("\r\n")
        if not password:
            raise config_error(key_path(prefix, "password_file"), f"{file} is empty")
        return password
    if "password_env" in section:
        name = read_string(section, "password_env", prefix, "")
        password = os.environ.get(name, "")
        if not name or not password:
            raise config_error(
                key_path(prefix, "password_env"),
                f'environment variable "{name}" is not set or empty',
            )
        return password
    return None


def _count(
    section: Mapping[str, object], key: str, prefix: str, default: int, *, minimum: int
) -> int:
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(key_path(prefix, key), f"must be a whole number, got {describe(value)}")
    shown = value.text if isinstance(value, YamlInt) else str(value)
    if not minimum <= value <= _MAX_POOL:
        raise config_error(
            key_path(prefix, key), f"{shown} is out of range ({minimum} to {_MAX_POOL})"
        )
    return int(value)

"""The `lockd proxy --config FILE` file: listeners, their upstreams, limits, TLS, the agent.

A file of its own (not a section of lockd.yaml): the proxy runs next to a node agent,
often on another machine than the auth server, and shares nothing with `lockd start`
but the agent's socket. Same rules as lockd.yaml (docs/config.md): unknown keys refused,
types checked, Go-style durations, relative paths relative to the file's directory.
docs/proxy.md lists every key; this module and that page must agree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import yaml

from lockd.config.readers import (
    config_error,
    describe,
    key_path,
    read_address,
    read_bool,
    read_choice,
    read_duration,
    read_section,
    read_string,
)
from lockd.config.yaml_loader import StrictLoader, YamlInt
from lockd.domain.errors import ValidationError

PROTOCOLS = ("postgres", "tcp", "http")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_MAX_CONNECTIONS = 1000
MAX_CONNECTIONS_LIMIT = 100_000
DEFAULT_BUFFER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Where a listener relays to: `address` (host:port) or `unix_socket`, one of them."""

    address: str = ""
    unix_socket: Path | None = None
    tls: bool = False
    ca_file: Path | None = None  # verify the upstream's certificate against this CA
    server_name: str = ""  # the name its certificate must carry (default: the host)
    database_user: str = ""  # postgres: the user the proxy logs in as
    database: str = ""  # postgres: fixed database ("" = the one the client asks for)
    password: str = field(default="", repr=False)  # postgres: from password_file, for SCRAM


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    protocol: str
    listen_addr: str
    upstream: UpstreamConfig
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    handshake_timeout: timedelta = timedelta(seconds=10)
    idle_timeout: timedelta = timedelta(hours=1)
    buffer_bytes: int = DEFAULT_BUFFER_BYTES


@dataclass(frozen=True, slots=True)
class ProxyTlsConfig:
    """The proxy's own certificate, and the CA whose client certificates it accepts."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    agent_socket: Path
    tls: ProxyTlsConfig
    listeners: tuple[ListenerConfig, ...]
    metrics_addr: str = ""
    shutdown_timeout: timedelta = timedelta(seconds=10)
    log_format: str = "auto"
    log_level: str = "info"


_TOP = ("agent_socket", "tls", "listeners", "metrics_addr", "shutdown_timeout", "log")
_TLS = ("cert_file", "key_file", "client_ca_file")
_LISTENER = (
    "name",
    "protocol",
    "listen_addr",
    "upstream",
    "max_connections",
    "handshake_timeout",
    "idle_timeout",
    "buffer_bytes",
)
_UPSTREAM = (
    "address",
    "unix_socket",
    "tls",
    "ca_file",
    "server_name",
    "database_user",
    "database",
    "password_file",
)


def load_proxy_config(path: Path) -> ProxyConfig:
    """Read and validate a proxy config file; every problem is a ValidationError."""
    source = Path(os.path.abspath(path))
    try:
        text = source.read_text(encoding="utf-8")
        documents = list(yaml.load_all(text, Loader=StrictLoader))
    except FileNotFoundError:
        raise ValidationError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValidationError(f"{path}: cannot read config file: {error}") from None
    if len(documents) != 1 or documents[0] is None:
        raise ValidationError(f"{path}: expected one non-empty YAML document")
    try:
        return parse_proxy_config(documents[0], source.parent)
    except ValidationError as error:
        raise ValidationError(f"{path}: {error}") from None


def parse_proxy_config(data: object, base: Path) -> ProxyConfig:
    """Validate a loaded mapping; relative paths are taken relative to `base`."""
    root = read_section(data, "", _TOP)
    log = read_section(root.get("log"), "log", ("format", "level"))
    listeners = root.get("listeners")
    if not isinstance(listeners, list) or not listeners:
        raise config_error("listeners", "must be a non-empty list of listeners")
    parsed = tuple(
        _listener(item, f"listeners[{index}]", base) for index, item in enumerate(listeners)
    )
    _check_unique(parsed)
    return ProxyConfig(
        agent_socket=_path(root, "agent_socket", "", base),
        tls=_tls(root.get("tls"), base),
        listeners=parsed,
        metrics_addr=read_address(root, "metrics_addr", "", "", allow_empty=True),
        shutdown_timeout=read_duration(
            root, "shutdown_timeout", "", timedelta(seconds=10), timedelta(0), timedelta(hours=1)
        ),
        log_format=read_choice(log, "format", "log", LOG_FORMATS, "auto", "log format"),
        log_level=read_choice(log, "level", "log", LOG_LEVELS, "info", "log level"),
    )


def _tls(value: object, base: Path) -> ProxyTlsConfig:
    if value is None:
        raise config_error("tls", "is required (cert_file, key_file, client_ca_file)")
    section = read_section(value, "tls", _TLS)
    return ProxyTlsConfig(
        cert_file=_path(section, "cert_file", "tls", base),
        key_file=_path(section, "key_file", "tls", base),
        client_ca_file=_path(section, "client_ca_file", "tls", base),
    )


def _listener(value: object, prefix: str, base: Path) -> ListenerConfig:
    section = read_section(value, prefix, _LISTENER)
    name = read_string(section, "name", prefix, "")
    if not name:
        raise config_error(key_path(prefix, "name"), "must not be empty")
    if "protocol" not in section:
        raise config_error(key_path(prefix, "protocol"), "is required (postgres, tcp or http)")
    protocol = read_choice(section, "protocol", prefix, PROTOCOLS, "", "protocol")
    if "listen_addr" not in section:
        raise config_error(key_path(prefix, "listen_addr"), "is required")
    upstream = _upstream(section.get("upstream"), key_path(prefix, "upstream"), base, protocol)
    return ListenerConfig(
        name=name,
        protocol=protocol,
        listen_addr=read_address(section, "listen_addr", prefix, ""),
        upstream=upstream,
        max_connections=_count(
            section, "max_connections", prefix, DEFAULT_MAX_CONNECTIONS, MAX_CONNECTIONS_LIMIT
        ),
        handshake_timeout=read_duration(
            section,
            "handshake_timeout",
            prefix,
            timedelta(seconds=10),
            timedelta(milliseconds=100),
            timedelta(minutes=5),
        ),
        idle_timeout=read_duration(
            section, "idle_timeout", prefix, timedelta(hours=1), timedelta(seconds=1), None
        ),
        buffer_bytes=_count(
            section, "buffer_bytes", prefix, DEFAULT_BUFFER_BYTES, 16 * 1024 * 1024, minimum=1024
        ),
    )


def _upstream(value: object, prefix: str, base: Path, protocol: str) -> UpstreamConfig:
    if value is None:
        raise config_error(prefix, "is required")
    section = read_section(value, prefix, _UPSTREAM)
    address = section.get("address")
    socket = _optional_path(section, "unix_socket", prefix, base)
    if (address is None) == (socket is None):
        raise config_error(prefix, "set exactly one of address and unix_socket")
    if address is not None and read_address(section, "address", prefix, "").endswith(":0"):
        raise config_error(key_path(prefix, "address"), "port 0 cannot be dialled")
    tls = read_bool(section, "tls", prefix, False)
    if tls and socket is not None:
        raise config_error(key_path(prefix, "tls"), "TLS over a Unix socket is not supported")
    user = read_string(section, "database_user", prefix, "")
    if protocol == "postgres" and not user:
        raise config_error(key_path(prefix, "database_user"), "is required for postgres")
    if protocol != "postgres":
        for key in ("database_user", "database", "password_file"):
            if key in section:
                raise config_error(key_path(prefix, key), "only applies to postgres listeners")
    return UpstreamConfig(
        address=read_string(section, "address", prefix, ""),
        unix_socket=socket,
        tls=tls,
        ca_file=_optional_path(section, "ca_file", prefix, base),
        server_name=read_string(section, "server_name", prefix, ""),
        database_user=user,
        database=read_string(section, "database", prefix, ""),
        password=_password(section, prefix, base),
    )


def _password(section: Mapping[str, object], prefix: str, base: Path) -> str:
    """The first line of `password_file` ("" without one). Read once, here, at start."""
    path = _optional_path(section, "password_file", prefix, base)
    if path is None:
        return ""
    where = key_path(prefix, "password_file")
    try:
        if path.stat().st_mode & 0o077:
            raise config_error(where, f"{path} must be private to its owner (chmod 600)")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise config_error(where, f"cannot read {path}: {error}") from None
    if not lines or not lines[0]:
        raise config_error(where, f"{path} holds no password on its first line")
    return lines[0]


def _optional_path(section: Mapping[str, object], key: str, prefix: str, base: Path) -> Path | None:
    text = read_string(section, key, prefix, "")
    return Path(os.path.abspath(base / text)) if text else None


def _path(section: Mapping[str, object], key: str, prefix: str, base: Path) -> Path:
    path = _optional_path(section, key, prefix, base)
    if path is None:
        raise config_error(key_path(prefix, key), "is required")
    return path


def _count(
    section: Mapping[str, object],
    key: str,
    prefix: str,
    default: int,
    maximum: int,
    minimum: int = 1,
) -> int:
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(key_path(prefix, key), f"must be a whole number, got {describe(value)}")
    number = int(value)
    if not minimum <= number <= maximum:
        shown = value.text if isinstance(value, YamlInt) else str(number)
        raise config_error(key_path(prefix, key), f"{shown} is not in {minimum}..{maximum}")
    return number


def _check_unique(listeners: tuple[ListenerConfig, ...]) -> None:
    names: set[str] = set()
    addresses: set[str] = set()
    for index, listener in enumerate(listeners):
        if listener.name in names:
            raise config_error(f"listeners[{index}].name", f'"{listener.name}" is used twice')
        port_zero = listener.listen_addr.endswith(":0")
        if listener.listen_addr in addresses and not port_zero:
            raise config_error(
                f"listeners[{index}].listen_addr", f'"{listener.listen_addr}" is used twice'
            )
        names.add(listener.name)
        addresses.add(listener.listen_addr)

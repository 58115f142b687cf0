"""Typed configuration of `lockd start`: a YAML file in the spirit of teleport.yaml.

`load_config(path)` reads and validates a file, `parse_config(data)` validates an already
loaded mapping and `default_config(data_dir)` is the embedded default (an auth server on
SQLite plus an agent, in one process). Every key, its default and its meaning is in
docs/config.md; this module is the executable version of that page.

Validation is strict, because a security system that silently ignores a typo is worse
than one that refuses to start. Every problem raises `ValidationError` naming the key path,
e.g. `auth_service.heartbeat_interval: invalid duration "5": missing unit (...)`:

* unknown keys are refused, with a suggestion when one is close;
* types are checked; YAML 1.1's traps are caught: `cluster_name: no` is the boolean
  false (refused: quote it), `socket_mode: 660` is decimal 660 (refused: write 0660),
  durations need a unit (`5s`, not `5`), and a key given twice is refused instead of the
  last one silently winning;
* values are checked (addresses are host:port, ports in range, durations in bounds).

Paths: a relative `data_dir` is relative to the directory of the config file (to the
working directory when there is no file); every other relative path names a file inside
`data_dir`. The environment variable `LOCKD_DATA_DIR`, when set and non-empty, overrides
`data_dir` (relative to the working directory).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from lockd.domain.errors import ValidationError
from lockd.domain.modes import LockingMode, parse_locking_mode
from lockd.domain.timeparse import format_duration, parse_duration

DATA_DIR_ENV = "LOCKD_DATA_DIR"

DEFAULT_DATA_DIR = Path("/var/lib/lockd")
DEFAULT_CLUSTER_NAME = "lockd.local"
DEFAULT_AUTH_LISTEN_ADDR = "127.0.0.1:3025"
DEFAULT_JOIN_LISTEN_ADDR = "127.0.0.1:3026"
DEFAULT_AUTH_METRICS_ADDR = "127.0.0.1:3081"
DEFAULT_AGENT_METRICS_ADDR = "127.0.0.1:3082"
DEFAULT_HEARTBEAT_INTERVAL = timedelta(seconds=5)
DEFAULT_MAX_STALENESS = timedelta(minutes=5)
DEFAULT_SOCKET_MODE = 0o660

MIN_HEARTBEAT_INTERVAL = timedelta(milliseconds=10)
MAX_HEARTBEAT_INTERVAL = timedelta(minutes=1)
MIN_MAX_STALENESS = timedelta(seconds=1)

LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")
STORAGE_TYPES = ("sqlite", "memory")
AUDIT_STREAMS = ("stdout", "stderr")
SERVER_ID_FILE = "server_id"
MAX_SERVER_ID_LENGTH = 253


# --------------------------------------------------------------------------- the types


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str = "auto"  # "json" | "console" | "auto" (console on a TTY, else json)
    level: str = "info"  # debug | info | warning | error


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """`sink`: "" (the default: `<data_dir>/audit.log`), "stdout", "stderr" or a file.

    A file is stored as an absolute path; use `audit_path(config)` for the file to open.
    """

    sink: str = ""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    type: str  # "sqlite" | "memory"
    path: Path  # the SQLite database file; unused by "memory"


@dataclass(frozen=True, slots=True)
class AuthenticationConfig:
    locking_mode: LockingMode | None = None  # the static cluster-wide default; None: unset


@dataclass(frozen=True, slots=True)
class AuthServiceConfig:
    enabled: bool
    listen_addr: str  # host:port of the gRPC API
    admin_socket: Path  # the local admin socket (mode 0600)
    metrics_addr: str  # host:port of /metrics; "" = disabled
    storage: StorageConfig
    authentication: AuthenticationConfig
    heartbeat_interval: timedelta
    insecure: bool  # plaintext gRPC: local development only, loopback addresses only
    join_listen_addr: str  # host:port where agents exchange join tokens (TLS, no client cert)
    tls_names: tuple[str, ...]  # extra DNS names / IPs for the server certificate


@dataclass(frozen=True, slots=True)
class AgentServiceConfig:
    enabled: bool
    server_id: str  # "" = generated once and kept in <data_dir>/server_id
    auth_servers: tuple[str, ...]  # host:port of auth servers, tried in turn
    socket: Path  # the Unix socket sidecars talk to
    socket_mode: int  # permission bits of that socket
    metrics_addr: str  # host:port of /metrics; "" = disabled
    max_staleness: timedelta  # how long the view may go unconfirmed before STALE
    join_token: str  # one-time token to join a TLS cluster (lockctl tokens add)
    ca_pin: str  # "sha256:<hex>" of the cluster CA, checked before joining
    join_servers: tuple[str, ...]  # host:port of auth join ports, tried in turn
    insecure: bool  # plaintext to the auth servers: local development only


@dataclass(frozen=True, slots=True)
class Config:
    cluster_name: str
    data_dir: Path  # absolute
    log: LogConfig
    audit: AuditConfig
    auth_service: AuthServiceConfig
    agent_service: AgentServiceConfig
    source: Path | None  # the file it was read from, if any


# --------------------------------------------------------------------------- entry points


def load_config(path: Path) -> Config:
    """Read, parse and validate a YAML config file; every problem is a ValidationError."""
    source = Path(os.path.abspath(path))
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValidationError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationError(f"{path}: cannot read config file: {error}") from None
    try:
        documents = list(yaml.load_all(text, Loader=_StrictLoader))
    except yaml.YAMLError as error:
        raise ValidationError(f"{path}: invalid YAML: {error}") from None
    if len(documents) > 1:
        raise ValidationError(f"{path}: expected one YAML document, found {len(documents)}")
    data = documents[0] if documents else None
    if data is None:
        raise ValidationError(f"{path}: the config file is empty")
    try:
        return _parse(data, source, os.environ)
    except ValidationError as error:
        raise ValidationError(f"{path}: {error}") from None


def parse_config(
    data: object, source: Path | None = None, *, env: Mapping[str, str] | None = None
) -> Config:
    """Validate an already loaded config mapping.

    `source` is the file it came from: a relative `data_dir` is resolved against its
    directory, and error messages are prefixed with it. `env` defaults to `os.environ`
    (only `LOCKD_DATA_DIR` is read).
    """
    environment = os.environ if env is None else env
    try:
        return _parse(data, source, environment)
    except ValidationError as error:
        if source is not None:
            raise ValidationError(f"{source}: {error}") from None
        raise


def default_config(data_dir: Path) -> Config:
    """The embedded default: auth server (SQLite) and agent in one process, every default.

    `data_dir` is used as given (no `LOCKD_DATA_DIR` lookup); relative to the working
    directory when relative.
    """
    return parse_config(
        {
            "data_dir": str(data_dir),
            "auth_service": {"enabled": True},
            "agent_service": {"enabled": True},
        },
        env={},
    )


def audit_path(config: Config) -> Path | None:
    """The audit log file, or None when the sink is stdout or stderr."""
    sink = config.audit.sink
    if sink in AUDIT_STREAMS:
        return None
    return Path(sink) if sink else config.data_dir / "audit.log"


def resolve_server_id(config: Config) -> str:
    """The agent's server_id: the configured one, else `<data_dir>/server_id`.

    The file is created on first use with a fresh UUIDv4 (written to a temporary file,
    then linked into place, so concurrent starts agree on one id and a crash never
    leaves a half-written file). Later calls read it back.
    """
    if config.agent_service.server_id:
        return config.agent_service.server_id
    path = config.data_dir / SERVER_ID_FILE
    if not path.exists():
        _create_server_id(path)
    try:
        server_id = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationError(f"{path}: cannot read server_id: {error}") from None
    problem = _server_id_problem(server_id)
    if problem:
        raise ValidationError(f"{path}: {problem}")
    return server_id


def _create_server_id(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(f"{uuid.uuid4()}\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # atomic, and refuses to replace a winner's id
        except FileExistsError:
            pass
        else:
            _fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


# --------------------------------------------------------------------------- YAML loading


class _YamlInt(int):
    """An int that remembers how YAML spelled it (`0660`, `660`, `1:30`)."""

    text: str


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keeps the spelling of integers."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> _YamlInt:
    value = _YamlInt(loader.construct_yaml_int(node))
    value.text = str(node.value)
    return value


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


# --------------------------------------------------------------------------- parsing


_TOP_KEYS = ("cluster_name", "data_dir", "log", "audit", "auth_service", "agent_service")
_LOG_KEYS = ("format", "level")
_AUDIT_KEYS = ("sink",)
_AUTH_KEYS = (
    "enabled",
    "listen_addr",
    "admin_socket",
    "metrics_addr",
    "storage",
    "authentication",
    "heartbeat_interval",
    "insecure",
    "join_listen_addr",
    "tls_names",
)
_STORAGE_KEYS = ("type", "path")
_AUTHENTICATION_KEYS = ("locking_mode",)
_AGENT_KEYS = (
    "enabled",
    "server_id",
    "auth_servers",
    "socket",
    "socket_mode",
    "metrics_addr",
    "max_staleness",
    "join_token",
    "ca_pin",
    "join_servers",
    "insecure",
)


def _parse(data: object, source: Path | None, env: Mapping[str, str]) -> Config:
    root = _section(data, "", _TOP_KEYS)
    cluster_name = _string(root, "cluster_name", "", DEFAULT_CLUSTER_NAME)
    _check_cluster_name(cluster_name)
    data_dir = _data_dir(root, source, env)
    log = _log(_section(root.get("log"), "log", _LOG_KEYS))
    audit = _audit(_section(root.get("audit"), "audit", _AUDIT_KEYS), data_dir)
    auth = _auth_service(_section(root.get("auth_service"), "auth_service", _AUTH_KEYS), data_dir)
    agent = _agent_service(
        _section(root.get("agent_service"), "agent_service", _AGENT_KEYS), data_dir
    )
    _check_together(auth, agent)
    return Config(
        cluster_name=cluster_name,
        data_dir=data_dir,
        log=log,
        audit=audit,
        auth_service=auth,
        agent_service=agent,
        source=source,
    )


def _data_dir(root: Mapping[str, object], source: Path | None, env: Mapping[str, str]) -> Path:
    override = env.get(DATA_DIR_ENV, "")
    if override:
        return Path(os.path.abspath(override))
    text = _string(root, "data_dir", "", str(DEFAULT_DATA_DIR))
    if not text:
        raise _error("data_dir", "must not be empty")
    path = Path(text)
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    return Path(os.path.abspath(path))


def _log(section: Mapping[str, object]) -> LogConfig:
    fmt = _choice(section, "format", "log", LOG_FORMATS, "auto", "log format")
    level = _choice(section, "level", "log", LOG_LEVELS, "info", "log level")
    return LogConfig(format=fmt, level=level)


def _audit(section: Mapping[str, object], data_dir: Path) -> AuditConfig:
    sink = _string(section, "sink", "audit", "")
    if sink and sink not in AUDIT_STREAMS:
        sink = str(_in_data_dir(sink, data_dir))
    return AuditConfig(sink=sink)


def _auth_service(section: Mapping[str, object], data_dir: Path) -> AuthServiceConfig:
    prefix = "auth_service"
    storage = _section(section.get("storage"), f"{prefix}.storage", _STORAGE_KEYS)
    storage_type = _choice(
        storage, "type", f"{prefix}.storage", STORAGE_TYPES, "sqlite", "storage type"
    )
    authentication = _section(
        section.get("authentication"), f"{prefix}.authentication", _AUTHENTICATION_KEYS
    )
    locking_mode: LockingMode | None = None
    if authentication.get("locking_mode") is not None:
        raw_mode = authentication["locking_mode"]
        try:
            locking_mode = parse_locking_mode(raw_mode)
        except ValidationError as error:
            raise _error(f"{prefix}.authentication.locking_mode", str(error)) from None
    return AuthServiceConfig(
        enabled=_bool(section, "enabled", prefix, False),
        listen_addr=_address(section, "listen_addr", prefix, DEFAULT_AUTH_LISTEN_ADDR),
        admin_socket=_path(section, "admin_socket", prefix, data_dir, "admin.sock"),
        metrics_addr=_address(
            section, "metrics_addr", prefix, DEFAULT_AUTH_METRICS_ADDR, allow_empty=True
        ),
        storage=StorageConfig(
            type=storage_type,
            path=_path(storage, "path", f"{prefix}.storage", data_dir, "lockd.db"),
        ),
        authentication=AuthenticationConfig(locking_mode=locking_mode),
        heartbeat_interval=_duration(
            section,
            "heartbeat_interval",
            prefix,
            DEFAULT_HEARTBEAT_INTERVAL,
            MIN_HEARTBEAT_INTERVAL,
            MAX_HEARTBEAT_INTERVAL,
        ),
        insecure=_insecure(section, prefix, ("listen_addr",)),
        join_listen_addr=_address(section, "join_listen_addr", prefix, DEFAULT_JOIN_LISTEN_ADDR),
        tls_names=_names(section, "tls_names", prefix),
    )


def _insecure(section: Mapping[str, object], prefix: str, addresses: tuple[str, ...]) -> bool:
    """Plaintext is for local development: refused unless every address is loopback."""
    insecure = _bool(section, "insecure", prefix, False)
    if not insecure:
        return False
    for key in addresses:
        values = section.get(key, [])
        for value in values if isinstance(values, list) else [values]:
            host = str(value).rpartition(":")[0].strip("[]")
            if not _is_loopback(host):
                raise _error(
                    f"{prefix}.insecure",
                    f'plaintext is only allowed on loopback addresses, not "{value}" '
                    f"({prefix}.{key})",
                )
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _names(section: Mapping[str, object], key: str, prefix: str) -> tuple[str, ...]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise _error(
            _join(prefix, key),
            f"must be a list of host names or IP addresses, got {_describe(value)}",
        )
    return tuple(value)


def _agent_service(section: Mapping[str, object], data_dir: Path) -> AgentServiceConfig:
    prefix = "agent_service"
    enabled = _bool(section, "enabled", prefix, False)
    server_id = _string(section, "server_id", prefix, "")
    problem = _server_id_problem(server_id) if server_id else None
    if problem:
        raise _error(f"{prefix}.server_id", problem)
    auth_servers = _address_list(section, "auth_servers", prefix, DEFAULT_AUTH_LISTEN_ADDR)
    if enabled and not auth_servers:
        raise _error(f"{prefix}.auth_servers", "must name at least one auth server")
    return AgentServiceConfig(
        enabled=enabled,
        server_id=server_id,
        auth_servers=auth_servers,
        socket=_path(section, "socket", prefix, data_dir, "agent.sock"),
        socket_mode=_socket_mode(section, prefix),
        metrics_addr=_address(
            section, "metrics_addr", prefix, DEFAULT_AGENT_METRICS_ADDR, allow_empty=True
        ),
        max_staleness=_duration(
            section, "max_staleness", prefix, DEFAULT_MAX_STALENESS, MIN_MAX_STALENESS, None
        ),
        join_token=_string(section, "join_token", prefix, ""),
        ca_pin=_ca_pin(section, prefix),
        join_servers=_address_list(section, "join_servers", prefix, DEFAULT_JOIN_LISTEN_ADDR),
        insecure=_insecure(section, prefix, ("auth_servers",)),
    )


def _ca_pin(section: Mapping[str, object], prefix: str) -> str:
    pin = _string(section, "ca_pin", prefix, "")
    digest = pin.removeprefix("sha256:")
    if pin and (
        not pin.startswith("sha256:")
        or len(digest) != 64
        or not all(c in "0123456789abcdef" for c in digest)
    ):
        raise _error(
            f"{prefix}.ca_pin",
            f'"{pin}" is not a CA pin: want sha256:<64 hex digits> (lockctl status prints it)',
        )
    return pin


def _address_list(
    section: Mapping[str, object], key: str, prefix: str, default: str
) -> tuple[str, ...]:
    path = f"{prefix}.{key}"
    if key not in section:
        return (default,)
    value = section[key]
    if not isinstance(value, list):
        raise _error(path, f"must be a list of host:port addresses, got {_describe(value)}")
    servers: list[str] = []
    for position, item in enumerate(value):
        item_path = f"{path}[{position}]"
        if not isinstance(item, str):
            raise _error(item_path, f"must be a host:port string, got {_describe(item)}")
        _check_address(item, item_path, dialing=True)
        if item in servers:
            raise _error(item_path, f'"{item}" is listed twice')
        servers.append(item)
    return tuple(servers)


def _check_together(auth: AuthServiceConfig, agent: AgentServiceConfig) -> None:
    if not auth.enabled and not agent.enabled:
        raise ValidationError(
            "nothing to run: set auth_service.enabled or agent_service.enabled to true"
        )
    if auth.enabled and agent.enabled and agent.max_staleness <= auth.heartbeat_interval:
        raise _error(
            "agent_service.max_staleness",
            f"{format_duration(agent.max_staleness)} must be longer than "
            f"auth_service.heartbeat_interval ({format_duration(auth.heartbeat_interval)}), "
            "or the agent turns stale between two heartbeats",
        )
    used: dict[str, str] = {}
    candidates = []
    if auth.enabled:
        candidates += [
            ("auth_service.listen_addr", auth.listen_addr),
            ("auth_service.metrics_addr", auth.metrics_addr),
        ]
    if agent.enabled:
        candidates.append(("agent_service.metrics_addr", agent.metrics_addr))
    for key, address in candidates:
        if not address or address.rpartition(":")[2] == "0":
            continue
        if address in used:
            raise _error(key, f'"{address}" is already used by {used[address]}')
        used[address] = key


# --------------------------------------------------------------------------- value readers


def _error(path: str, message: str) -> ValidationError:
    return ValidationError(f"{path}: {message}" if path else message)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _describe(value: object) -> str:
    """What YAML made of a value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, _YamlInt):
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


def _section(value: object, path: str, known: tuple[str, ...]) -> Mapping[str, object]:
    """A mapping with only `known` keys; null (a section with every child commented out)
    counts as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        where = path or "config"
        raise _error(where, f"must be a mapping, got {_describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise _error(
                _join(path, str(key)),
                f"key {_describe(key)} is not a string (YAML reads yes/no/on/off as booleans; "
                "quote it)",
            )
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f'; did you mean "{close[0]}"?' if close else f" (known keys: {', '.join(known)})"
            )
            raise _error(_join(path, key), f"unknown key{hint}")
    return value


def _string(section: Mapping[str, object], key: str, prefix: str, default: str) -> str:
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
        raise _error(_join(prefix, key), f"must be a string, got {_describe(value)}{hint}")
    return value


def _bool(section: Mapping[str, object], key: str, prefix: str, default: bool) -> bool:
    if key not in section:
        return default
    value = section[key]
    if not isinstance(value, bool):
        raise _error(_join(prefix, key), f"must be true or false, got {_describe(value)}")
    return value


def _choice(
    section: Mapping[str, object],
    key: str,
    prefix: str,
    choices: tuple[str, ...],
    default: str,
    what: str,
) -> str:
    value = _string(section, key, prefix, default)
    if value not in choices:
        raise _error(
            _join(prefix, key),
            f'{what} "{value}" not supported (supported: {", ".join(choices)})',
        )
    return value


def _path(
    section: Mapping[str, object], key: str, prefix: str, data_dir: Path, default: str
) -> Path:
    text = _string(section, key, prefix, default)
    if not text:
        raise _error(_join(prefix, key), "must not be empty")
    return _in_data_dir(text, data_dir)


def _in_data_dir(text: str, data_dir: Path) -> Path:
    return Path(os.path.abspath(data_dir / text))


def _duration(
    section: Mapping[str, object],
    key: str,
    prefix: str,
    default: timedelta,
    minimum: timedelta,
    maximum: timedelta | None,
) -> timedelta:
    path = _join(prefix, key)
    if key not in section:
        return default
    value = section[key]
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _error(path, f"must be a duration such as 5s or 1m30s, got {_describe(value)}")
    else:
        text = value.text if isinstance(value, _YamlInt) else str(value)
        try:
            duration = parse_duration(text)
        except ValidationError as error:
            raise _error(path, str(error)) from None
    shown = format_duration(duration)
    if duration < minimum:
        raise _error(path, f"{shown} is shorter than the minimum {format_duration(minimum)}")
    if maximum is not None and duration > maximum:
        raise _error(path, f"{shown} is longer than the maximum {format_duration(maximum)}")
    return duration


def _address(
    section: Mapping[str, object],
    key: str,
    prefix: str,
    default: str,
    *,
    allow_empty: bool = False,
) -> str:
    path = _join(prefix, key)
    if key in section and not isinstance(section[key], str):
        raise _error(path, f"must be a host:port string, got {_describe(section[key])}")
    value = _string(section, key, prefix, default)
    if not value and allow_empty:
        return value
    _check_address(value, path, dialing=False)
    return value


def _check_address(value: str, path: str, *, dialing: bool) -> None:
    """host:port with a non-empty host ([v6] in brackets) and a port in range.

    Port 0 (any free port) is allowed where lockd listens, not where it dials.
    """
    host, colon, port = value.rpartition(":")
    example = "e.g. 127.0.0.1:3025 or [::1]:3025"
    if not colon or not host or not port:
        raise _error(path, f'invalid address "{value}": want host:port, {example}')
    bracketed = host.startswith("[") and host.endswith("]")
    if (":" in host and not bracketed) or any(ch.isspace() for ch in host):
        raise _error(path, f'invalid address "{value}": want host:port, {example}')
    if not port.isascii() or not port.isdigit():
        raise _error(path, f'invalid address "{value}": port "{port}" is not a number')
    lowest = 1 if dialing else 0
    if not lowest <= int(port) <= 65535:
        raise _error(path, f'invalid address "{value}": port {int(port)} is not in {lowest}..65535')


def _socket_mode(section: Mapping[str, object], prefix: str) -> int:
    path = f"{prefix}.socket_mode"
    if "socket_mode" not in section:
        return DEFAULT_SOCKET_MODE
    value = section["socket_mode"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _error(path, f'must be an octal mode such as "0660", got {_describe(value)}')
    if isinstance(value, str):
        digits = value.removeprefix("0o")
        if not digits or any(ch not in "01234567" for ch in digits):
            raise _error(path, f'invalid mode "{value}": want octal digits, e.g. "0660"')
        mode = int(digits, 8)
    else:
        spelled = value.text if isinstance(value, _YamlInt) else None
        if spelled is not None and value != 0 and not spelled.startswith("0"):
            raise _error(
                path,
                f"{spelled} is read as a decimal number; write the mode in octal, "
                'e.g. 0660 or "0660"',
            )
        mode = int(value)
    if not 0 <= mode <= 0o777:
        raise _error(path, f"mode {mode:#o} is not a permission mode (0000..0777)")
    if mode & 0o600 != 0o600:
        raise _error(path, f"mode {mode:04o} must let the owner read and write (0600)")
    return mode


def _check_cluster_name(name: str) -> None:
    if not name:
        raise _error("cluster_name", "must not be empty")
    if len(name) > 253 or any(ch.isspace() or not ch.isprintable() or ch == "/" for ch in name):
        raise _error(
            "cluster_name",
            f'"{name}" must be at most 253 characters, without "/", whitespace or '
            "control characters",
        )


def _server_id_problem(server_id: str) -> str | None:
    if not server_id:
        return "server_id must not be empty"
    if len(server_id) > MAX_SERVER_ID_LENGTH:
        return f"server_id is longer than {MAX_SERVER_ID_LENGTH} characters"
    if any(ch.isspace() or not ch.isprintable() or ch == "/" for ch in server_id):
        return f'server_id "{server_id}" may not contain "/", whitespace or control characters'
    return None

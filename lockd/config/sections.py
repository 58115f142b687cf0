"""Parsing the config's sections into the typed model, and checks across sections."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

from lockd.config.model import (
    AUDIT_STREAMS,
    DATA_DIR_ENV,
    DEFAULT_AGENT_METRICS_ADDR,
    DEFAULT_AUTH_LISTEN_ADDR,
    DEFAULT_AUTH_METRICS_ADDR,
    DEFAULT_CLUSTER_NAME,
    DEFAULT_DATA_DIR,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_JOIN_LISTEN_ADDR,
    DEFAULT_MAX_STALENESS,
    DEFAULT_SNAPSHOT_BYTES_IN_FLIGHT,
    DEFAULT_SSH_USER_CA_KEYS,
    MAX_HEARTBEAT_INTERVAL,
    MAX_WATCH_WORKERS,
    MIN_HEARTBEAT_INTERVAL,
    MIN_MAX_STALENESS,
    MIN_SNAPSHOT_BYTES_IN_FLIGHT,
    SSH_AGENT_UNREACHABLE,
    AgentServiceConfig,
    AuditConfig,
    AuthenticationConfig,
    AuthServiceConfig,
    Config,
    LogConfig,
    SSHHookConfig,
)
from lockd.config.readers import (
    check_address,
    check_cluster_name,
    config_error,
    describe,
    in_data_dir,
    key_path,
    read_address,
    read_bool,
    read_choice,
    read_duration,
    read_path,
    read_section,
    read_socket_mode,
    read_string,
    server_id_problem,
)
from lockd.config.storage import read_storage
from lockd.domain.addresses import split_host_port
from lockd.domain.errors import ValidationError
from lockd.domain.modes import LockingMode, parse_locking_mode
from lockd.domain.timeparse import format_duration
from lockd.obs.logging import LOG_FORMATS, LOG_LEVELS

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
    "watch_workers",
    "snapshot_bytes_in_flight",
)
_AUTHENTICATION_KEYS = ("locking_mode",)
_AGENT_KEYS = (
    "enabled",
    "server_id",
    "auth_servers",
    "socket",
    "socket_mode",
    "metrics_addr",
    "max_staleness",
    "locking_mode",
    "join_token",
    "ca_pin",
    "join_servers",
    "insecure",
    "ssh",
)
_SSH_KEYS = ("logins", "user_ca_keys", "agent_unreachable")


def parse_sections(data: object, source: Path | None, env: Mapping[str, str]) -> Config:
    root = read_section(data, "", _TOP_KEYS)
    cluster_name = read_string(root, "cluster_name", "", DEFAULT_CLUSTER_NAME)
    check_cluster_name(cluster_name)
    data_dir = _data_dir(root, source, env)
    log = _log(read_section(root.get("log"), "log", _LOG_KEYS))
    audit = _audit(read_section(root.get("audit"), "audit", _AUDIT_KEYS), data_dir)
    auth = _auth_service(
        read_section(root.get("auth_service"), "auth_service", _AUTH_KEYS), data_dir
    )
    agent = _agent_service(
        read_section(root.get("agent_service"), "agent_service", _AGENT_KEYS), data_dir
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
    text = read_string(root, "data_dir", "", str(DEFAULT_DATA_DIR))
    if not text:
        raise config_error("data_dir", "must not be empty")
    path = Path(text)
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    return Path(os.path.abspath(path))


def _log(section: Mapping[str, object]) -> LogConfig:
    fmt = read_choice(section, "format", "log", LOG_FORMATS, "auto", "log format")
    level = read_choice(section, "level", "log", LOG_LEVELS, "info", "log level")
    return LogConfig(format=fmt, level=level)


def _audit(section: Mapping[str, object], data_dir: Path) -> AuditConfig:
    sink = read_string(section, "sink", "audit", "")
    if sink and sink not in AUDIT_STREAMS:
        sink = str(in_data_dir(sink, data_dir))
    return AuditConfig(sink=sink)


def _auth_service(section: Mapping[str, object], data_dir: Path) -> AuthServiceConfig:
    prefix = "auth_service"
    storage = read_storage(section.get("storage"), f"{prefix}.storage", data_dir)
    authentication = read_section(
        section.get("authentication"), f"{prefix}.authentication", _AUTHENTICATION_KEYS
    )
    locking_mode: LockingMode | None = None
    if authentication.get("locking_mode") is not None:
        raw_mode = authentication["locking_mode"]
        try:
            locking_mode = parse_locking_mode(raw_mode)
        except ValidationError as error:
            raise config_error(f"{prefix}.authentication.locking_mode", str(error)) from None
    return AuthServiceConfig(
        enabled=read_bool(section, "enabled", prefix, False),
        listen_addr=read_address(section, "listen_addr", prefix, DEFAULT_AUTH_LISTEN_ADDR),
        admin_socket=read_path(section, "admin_socket", prefix, data_dir, "admin.sock"),
        metrics_addr=read_address(
            section, "metrics_addr", prefix, DEFAULT_AUTH_METRICS_ADDR, allow_empty=True
        ),
        storage=storage,
        authentication=AuthenticationConfig(locking_mode=locking_mode),
        heartbeat_interval=read_duration(
            section,
            "heartbeat_interval",
            prefix,
            DEFAULT_HEARTBEAT_INTERVAL,
            MIN_HEARTBEAT_INTERVAL,
            MAX_HEARTBEAT_INTERVAL,
        ),
        insecure=_insecure(section, prefix, ("listen_addr",)),
        join_listen_addr=read_address(
            section, "join_listen_addr", prefix, DEFAULT_JOIN_LISTEN_ADDR
        ),
        tls_names=_names(section, "tls_names", prefix),
        watch_workers=_watch_workers(section, prefix, storage.type),
        snapshot_bytes_in_flight=_byte_size(
            section,
            "snapshot_bytes_in_flight",
            prefix,
            DEFAULT_SNAPSHOT_BYTES_IN_FLIGHT,
            MIN_SNAPSHOT_BYTES_IN_FLIGHT,
        ),
    )


def _watch_workers(section: Mapping[str, object], prefix: str, storage: str) -> int:
    """`auto` (one per core) or a whole number of processes serving WatchLocks; workers
    beside this process tail a SQLite file, so other stores have one process."""
    value = section.get("watch_workers", 1)
    if value == "auto":
        value = max(1, min(os.cpu_count() or 1, MAX_WATCH_WORKERS))
        return value if storage == "sqlite" else 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WATCH_WORKERS:
        raise config_error(
            f"{prefix}.watch_workers",
            f'must be "auto" or a whole number from 1 to {MAX_WATCH_WORKERS}, '
            f"got {describe(value)}",
        )
    if storage != "sqlite" and value != 1:
        raise config_error(
            f"{prefix}.watch_workers",
            f"more than one needs the sqlite store (storage.type is {storage})",
        )
    return int(value)


_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _byte_size(
    section: Mapping[str, object], key: str, prefix: str, default: int, minimum: int
) -> int:
    """A size in bytes: a whole number, or one with a unit (B, KiB, MiB, GiB), e.g. 64MiB."""
    value = section.get(key, default)
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = int(value)
    elif isinstance(value, str):
        number = value.rstrip("BKMGi")
        unit = _SIZE_UNITS.get(value[len(number) :])
        if number.isdigit() and unit is not None:
            size = int(number) * unit
    if size is None:
        raise config_error(
            f"{prefix}.{key}",
            f"must be a size such as 64MiB (units B, KiB, MiB, GiB), got {describe(value)}",
        )
    if size < minimum:
        raise config_error(f"{prefix}.{key}", f"must be at least {minimum >> 20}MiB")
    return size


def _insecure(section: Mapping[str, object], prefix: str, addresses: tuple[str, ...]) -> bool:
    """Plaintext is for local development: refused unless every address is loopback."""
    insecure = read_bool(section, "insecure", prefix, False)
    if not insecure:
        return False
    for key in addresses:
        values = section.get(key, [])
        for value in values if isinstance(values, list) else [values]:
            host, _ = split_host_port(str(value))
            if not _is_loopback(host):
                raise config_error(
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
        raise config_error(
            key_path(prefix, key),
            f"must be a list of host names or IP addresses, got {describe(value)}",
        )
    return tuple(value)


def _agent_service(section: Mapping[str, object], data_dir: Path) -> AgentServiceConfig:
    prefix = "agent_service"
    enabled = read_bool(section, "enabled", prefix, False)
    server_id = read_string(section, "server_id", prefix, "")
    problem = server_id_problem(server_id) if server_id else None
    if problem:
        raise config_error(f"{prefix}.server_id", problem)
    auth_servers = _address_list(section, "auth_servers", prefix, DEFAULT_AUTH_LISTEN_ADDR)
    if enabled and not auth_servers:
        raise config_error(f"{prefix}.auth_servers", "must name at least one auth server")
    return AgentServiceConfig(
        enabled=enabled,
        server_id=server_id,
        auth_servers=auth_servers,
        socket=read_path(section, "socket", prefix, data_dir, "agent.sock"),
        socket_mode=read_socket_mode(section, prefix),
        metrics_addr=read_address(
            section, "metrics_addr", prefix, DEFAULT_AGENT_METRICS_ADDR, allow_empty=True
        ),
        max_staleness=read_duration(
            section, "max_staleness", prefix, DEFAULT_MAX_STALENESS, MIN_MAX_STALENESS, None
        ),
        locking_mode=_locking_mode(section, prefix),
        join_token=read_string(section, "join_token", prefix, ""),
        ca_pin=_ca_pin(section, prefix),
        join_servers=_address_list(section, "join_servers", prefix, DEFAULT_JOIN_LISTEN_ADDR),
        insecure=_insecure(section, prefix, ("auth_servers",)),
        ssh=_ssh_hook(read_section(section.get("ssh"), f"{prefix}.ssh", _SSH_KEYS), data_dir),
    )


def _ssh_hook(section: Mapping[str, object], data_dir: Path) -> SSHHookConfig:
    prefix = "agent_service.ssh"
    logins = section.get("logins") or {}
    if not isinstance(logins, dict) or not all(
        isinstance(login, str) and isinstance(user, str) and login and user
        for login, user in logins.items()
    ):
        raise config_error(
            f"{prefix}.logins", "must map OS logins to lockd user names (both strings)"
        )
    return SSHHookConfig(
        logins=dict(logins),
        user_ca_keys=read_path(section, "user_ca_keys", prefix, data_dir, DEFAULT_SSH_USER_CA_KEYS),
        agent_unreachable=read_choice(
            section, "agent_unreachable", prefix, SSH_AGENT_UNREACHABLE, "refuse", "policy"
        ),
    )


def _locking_mode(section: Mapping[str, object], prefix: str) -> LockingMode:
    """`agent_service.locking_mode`: the node's minimum (default best_effort)."""
    raw = section.get("locking_mode", LockingMode.BEST_EFFORT.value)
    try:
        return parse_locking_mode(raw)
    except ValidationError as error:
        raise config_error(f"{prefix}.locking_mode", str(error)) from None


def _ca_pin(section: Mapping[str, object], prefix: str) -> str:
    pin = read_string(section, "ca_pin", prefix, "")
    digest = pin.removeprefix("sha256:")
    if pin and (
        not pin.startswith("sha256:")
        or len(digest) != 64
        or not all(c in "0123456789abcdef" for c in digest)
    ):
        raise config_error(
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
        raise config_error(path, f"must be a list of host:port addresses, got {describe(value)}")
    servers: list[str] = []
    for position, item in enumerate(value):
        item_path = f"{path}[{position}]"
        if not isinstance(item, str):
            raise config_error(item_path, f"must be a host:port string, got {describe(item)}")
        check_address(item, item_path, dialing=True)
        if item in servers:
            raise config_error(item_path, f'"{item}" is listed twice')
        servers.append(item)
    return tuple(servers)


def _check_together(auth: AuthServiceConfig, agent: AgentServiceConfig) -> None:
    if not auth.enabled and not agent.enabled:
        raise ValidationError(
            "nothing to run: set auth_service.enabled or agent_service.enabled to true"
        )
    if auth.enabled and agent.enabled and agent.max_staleness <= auth.heartbeat_interval:
        raise config_error(
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
        if not address or split_host_port(address)[1] == "0":
            continue
        if address in used:
            raise config_error(key, f'"{address}" is already used by {used[address]}')
        used[address] = key

"""The typed configuration: dataclasses, defaults and limits (docs/config.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from lockd.domain.modes import LockingMode
from lockd.store import STORE_TYPES
from lockd.store.postgres import PostgresOptions

DATA_DIR_ENV = "LOCKD_DATA_DIR"

DEFAULT_DATA_DIR = Path("/var/lib/lockd")
DEFAULT_CLUSTER_NAME = "lockd.local"
DEFAULT_AUTH_LISTEN_ADDR = "127.0.0.1:3025"
DEFAULT_JOIN_LISTEN_ADDR = "127.0.0.1:3026"
DEFAULT_AUTH_METRICS_ADDR = "127.0.0.1:3081"
DEFAULT_AGENT_METRICS_ADDR = "127.0.0.1:3082"
DEFAULT_HEARTBEAT_INTERVAL = timedelta(seconds=5)
DEFAULT_MAX_STALENESS = timedelta(minutes=5)
DEFAULT_SSH_USER_CA_KEYS = "/etc/ssh/lockd_user_ca.pub"
SSH_AGENT_UNREACHABLE = ("refuse", "allow")
DEFAULT_SOCKET_MODE = 0o660

MIN_HEARTBEAT_INTERVAL = timedelta(milliseconds=10)
MAX_HEARTBEAT_INTERVAL = timedelta(minutes=1)
MIN_MAX_STALENESS = timedelta(seconds=1)
MAX_WATCH_WORKERS = 64
# Snapshot bytes the auth server may have in flight to agents at once (lockd.auth.watch_stream).
DEFAULT_SNAPSHOT_BYTES_IN_FLIGHT = 256 << 20
MIN_SNAPSHOT_BYTES_IN_FLIGHT = 1 << 20

STORAGE_TYPES = STORE_TYPES  # one list, kept by lockd.store
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
    type: str  # "sqlite" | "memory" | "postgres"
    path: Path  # the SQLite database file; unused by "memory" and "postgres"
    postgres: PostgresOptions | None = None  # set exactly for "postgres"


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
    # Processes serving WatchLocks on listen_addr, this one included ("auto": one per core).
    watch_workers: int = 1
    snapshot_bytes_in_flight: int = DEFAULT_SNAPSHOT_BYTES_IN_FLIGHT


@dataclass(frozen=True, slots=True)
class SSHHookConfig:
    """`agent_service.ssh`: what `lockd ssh-session` (sshd's ForceCommand) needs."""

    logins: Mapping[str, str]  # OS login -> lockd user, for sessions without a certificate
    user_ca_keys: Path  # the cluster's SSH user CA (the file sshd's TrustedUserCAKeys names)
    agent_unreachable: str  # "refuse" (fail closed) or "allow" new sessions without the agent


@dataclass(frozen=True, slots=True)
class AgentServiceConfig:
    enabled: bool
    server_id: str  # "" = generated once and kept in <data_dir>/server_id
    auth_servers: tuple[str, ...]  # host:port of auth servers, tried in turn
    socket: Path  # the Unix socket sidecars talk to
    socket_mode: int  # permission bits of that socket
    metrics_addr: str  # host:port of /metrics; "" = disabled
    max_staleness: timedelta  # how long the view may go unconfirmed before STALE
    # The local minimum mode: strict makes every interaction on this node strict.
    locking_mode: LockingMode
    join_token: str  # one-time token to join a TLS cluster (lockctl tokens add)
    ca_pin: str  # "sha256:<hex>" of the cluster CA, checked before joining
    join_servers: tuple[str, ...]  # host:port of auth join ports, tried in turn
    insecure: bool  # plaintext to the auth servers: local development only
    ssh: SSHHookConfig


@dataclass(frozen=True, slots=True)
class Config:
    cluster_name: str
    data_dir: Path  # absolute
    log: LogConfig
    audit: AuditConfig
    auth_service: AuthServiceConfig
    agent_service: AgentServiceConfig
    source: Path | None  # the file it was read from, if any

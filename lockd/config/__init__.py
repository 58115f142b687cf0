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

import os
import uuid
from collections.abc import Mapping
from pathlib import Path

import yaml

from lockd.config.model import (
    AUDIT_STREAMS,
    DATA_DIR_ENV,
    DEFAULT_JOIN_LISTEN_ADDR,
    SERVER_ID_FILE,
    AgentServiceConfig,
    AuditConfig,
    AuthenticationConfig,
    AuthServiceConfig,
    Config,
    LogConfig,
    StorageConfig,
)
from lockd.config.readers import server_id_problem
from lockd.config.sections import parse_sections
from lockd.config.yaml_loader import StrictLoader
from lockd.domain.errors import ValidationError
from lockd.durable_files import write_durably

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_JOIN_LISTEN_ADDR",
    "AgentServiceConfig",
    "AuditConfig",
    "AuthServiceConfig",
    "AuthenticationConfig",
    "Config",
    "LogConfig",
    "StorageConfig",
    "audit_path",
    "default_config",
    "load_config",
    "parse_config",
    "resolve_server_id",
]

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
        documents = list(yaml.load_all(text, Loader=StrictLoader))
    except yaml.YAMLError as error:
        raise ValidationError(f"{path}: invalid YAML: {error}") from None
    if len(documents) > 1:
        raise ValidationError(f"{path}: expected one YAML document, found {len(documents)}")
    data = documents[0] if documents else None
    if data is None:
        raise ValidationError(f"{path}: the config file is empty")
    try:
        return parse_sections(data, source, os.environ)
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
        return parse_sections(data, source, environment)
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
    problem = server_id_problem(server_id)
    if problem:
        raise ValidationError(f"{path}: {problem}")
    return server_id


def _create_server_id(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_durably(path, f"{uuid.uuid4()}\n".encode(), mode=0o644, replace=False)

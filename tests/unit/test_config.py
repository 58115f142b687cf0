"""lockd.config: defaults, path resolution, strict validation with key paths, server_id."""

from __future__ import annotations

import dataclasses
import re
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from lockd.config import (
    DATA_DIR_ENV,
    Config,
    audit_path,
    default_config,
    load_config,
    parse_config,
    resolve_server_id,
)
from lockd.domain.errors import ValidationError
from lockd.domain.modes import LockingMode

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "examples"


@pytest.fixture(autouse=True)
def _no_data_dir_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "lockd.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_config(path)


# --------------------------------------------------------------------------- defaults


def test_minimal_config_takes_every_default(tmp_path: Path) -> None:
    """Only enabling the auth server yields the documented defaults everywhere."""
    config = load_text(tmp_path, "data_dir: /srv/lockd\nauth_service:\n  enabled: true\n")

    data = Path("/srv/lockd")
    assert config.cluster_name == "lockd.local"
    assert config.data_dir == data
    assert config.source == tmp_path / "lockd.yaml"
    assert config.log.format == "auto"
    assert config.log.level == "info"
    assert config.audit.sink == ""
    auth = config.auth_service
    assert auth.enabled is True
    assert auth.listen_addr == "127.0.0.1:3025"
    assert auth.admin_socket == data / "admin.sock"
    assert auth.metrics_addr == "127.0.0.1:3081"
    assert auth.storage.type == "sqlite"
    assert auth.storage.path == data / "lockd.db"
    assert auth.authentication.locking_mode is None
    assert auth.heartbeat_interval == timedelta(seconds=5)
    assert auth.insecure is False
    agent = config.agent_service
    assert agent.enabled is False
    assert agent.server_id == ""
    assert agent.auth_servers == ("127.0.0.1:3025",)
    assert agent.socket == data / "agent.sock"
    assert agent.socket_mode == 0o660
    assert agent.metrics_addr == "127.0.0.1:3082"
    assert agent.max_staleness == timedelta(minutes=5)


def test_data_dir_defaults_to_var_lib_lockd() -> None:
    """Without data_dir (and without the env override) the data dir is /var/lib/lockd."""
    config = parse_config({"agent_service": {"enabled": True}}, env={})

    assert config.data_dir == Path("/var/lib/lockd")


def test_default_config_runs_auth_and_agent_in_one_process(tmp_path: Path) -> None:
    """default_config enables both services with every path inside the given data dir."""
    config = default_config(tmp_path)

    assert config.auth_service.enabled
    assert config.agent_service.enabled
    assert config.data_dir == tmp_path
    assert config.auth_service.storage.path == tmp_path / "lockd.db"
    assert config.agent_service.socket == tmp_path / "agent.sock"
    assert config.source is None


def test_config_values_are_frozen(tmp_path: Path) -> None:
    """Config objects are immutable; derive variants with dataclasses.replace."""
    config = default_config(tmp_path)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.cluster_name = "other"  # type: ignore[misc]
    assert dataclasses.replace(config, cluster_name="other").cluster_name == "other"


def test_null_sections_mean_defaults(tmp_path: Path) -> None:
    """A section whose children are all commented out (YAML null) takes its defaults."""
    config = load_text(
        tmp_path,
        """
        data_dir: /srv/lockd
        log:
        audit:
        auth_service:
          enabled: true
          storage:
          authentication:
            locking_mode:
        """,
    )

    assert config.log.level == "info"
    assert config.auth_service.storage.type == "sqlite"
    assert config.auth_service.authentication.locking_mode is None


def test_every_key_is_read(tmp_path: Path) -> None:
    """Each documented key lands in its typed field."""
    config = load_text(
        tmp_path,
        """
        cluster_name: prod.example.com
        data_dir: /srv/lockd
        log: {format: json, level: debug}
        audit: {sink: stdout}
        auth_service:
          enabled: yes
          listen_addr: "[::1]:4025"
          admin_socket: /run/lockd/admin.sock
          metrics_addr: ""
          storage: {type: memory, path: state.db}
          authentication: {locking_mode: strict}
          heartbeat_interval: 1.5s
          insecure: true
        agent_service:
          enabled: true
          server_id: node-1
          auth_servers: ["auth1.example.com:3025", "auth2.example.com:3025"]
          socket: sockets/agent.sock
          socket_mode: "0600"
          metrics_addr: 0.0.0.0:9100
          max_staleness: 1m30s
        """,
    )

    assert config.cluster_name == "prod.example.com"
    assert config.log.format == "json"
    assert config.log.level == "debug"
    assert config.audit.sink == "stdout"
    auth = config.auth_service
    assert auth.listen_addr == "[::1]:4025"
    assert auth.admin_socket == Path("/run/lockd/admin.sock")
    assert auth.metrics_addr == ""
    assert auth.storage.type == "memory"
    assert auth.storage.path == Path("/srv/lockd/state.db")
    assert auth.authentication.locking_mode is LockingMode.STRICT
    assert auth.heartbeat_interval == timedelta(milliseconds=1500)
    assert auth.insecure is True
    agent = config.agent_service
    assert agent.server_id == "node-1"
    assert agent.auth_servers == ("auth1.example.com:3025", "auth2.example.com:3025")
    assert agent.socket == Path("/srv/lockd/sockets/agent.sock")
    assert agent.socket_mode == 0o600
    assert agent.metrics_addr == "0.0.0.0:9100"
    assert agent.max_staleness == timedelta(seconds=90)


def test_python_values_are_accepted_by_parse_config(tmp_path: Path) -> None:
    """parse_config takes timedelta, Path and int modes from Python callers (tests)."""
    config = parse_config(
        {
            "data_dir": tmp_path,
            "auth_service": {"enabled": True, "heartbeat_interval": timedelta(milliseconds=50)},
            "agent_service": {"enabled": True, "socket_mode": 0o600, "socket": tmp_path / "a"},
        },
        env={},
    )

    assert config.auth_service.heartbeat_interval == timedelta(milliseconds=50)
    assert config.agent_service.socket_mode == 0o600
    assert config.agent_service.socket == tmp_path / "a"


# --------------------------------------------------------------------------- paths


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    """data_dir: ../data in /x/etc/lockd.yaml means /x/data, whatever the working dir."""
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "lockd.yaml"
    path.write_text("data_dir: ../data\nauth_service: {enabled: true}\n", encoding="utf-8")

    config = load_config(path)

    assert config.data_dir == tmp_path / "data"
    assert config.auth_service.storage.path == tmp_path / "data" / "lockd.db"


def test_relative_data_dir_without_a_file_is_relative_to_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """parse_config without a source resolves a relative data_dir against the cwd."""
    monkeypatch.chdir(tmp_path)

    config = parse_config({"data_dir": "state", "auth_service": {"enabled": True}}, env={})

    assert config.data_dir == tmp_path / "state"


def test_env_overrides_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LOCKD_DATA_DIR replaces the file's data_dir, and the derived default paths follow."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "override"))

    config = load_text(tmp_path, "data_dir: /srv/lockd\nauth_service: {enabled: true}\n")

    assert config.data_dir == tmp_path / "override"
    assert config.auth_service.admin_socket == tmp_path / "override" / "admin.sock"


def test_env_override_is_read_by_parse_config(tmp_path: Path) -> None:
    """parse_config takes the environment as a parameter; an empty value is ignored."""
    data = {"data_dir": "/srv/lockd", "auth_service": {"enabled": True}}

    assert parse_config(data, env={DATA_DIR_ENV: str(tmp_path)}).data_dir == tmp_path
    assert parse_config(data, env={DATA_DIR_ENV: ""}).data_dir == Path("/srv/lockd")


def test_audit_path_defaults_into_the_data_dir(tmp_path: Path) -> None:
    """sink "" is <data_dir>/audit.log, stdout/stderr have no file, relative is in data_dir."""

    def sink(value: str) -> Config:
        return parse_config(
            {
                "data_dir": str(tmp_path),
                "audit": {"sink": value},
                "auth_service": {"enabled": True},
            },
            env={},
        )

    assert audit_path(sink("")) == tmp_path / "audit.log"
    assert audit_path(sink("stdout")) is None
    assert audit_path(sink("stderr")) is None
    assert audit_path(sink("logs/audit.jsonl")) == tmp_path / "logs" / "audit.jsonl"
    assert audit_path(sink("/var/log/lockd.audit")) == Path("/var/log/lockd.audit")


# --------------------------------------------------------------------------- examples


def test_dev_example_puts_data_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/examples/lockd-dev.yaml (make run) runs both services with data in ./data."""
    config = load_config(EXAMPLES / "lockd-dev.yaml")

    assert config.cluster_name == "lockd.local"
    assert config.data_dir == REPO / "data"
    assert config.log.format == "console"
    assert config.auth_service.enabled
    assert config.auth_service.listen_addr == "127.0.0.1:3025"
    assert config.auth_service.storage.type == "sqlite"
    assert config.auth_service.metrics_addr == "127.0.0.1:3081"
    assert config.agent_service.enabled
    assert config.agent_service.auth_servers == ("127.0.0.1:3025",)
    assert config.agent_service.metrics_addr == "127.0.0.1:3082"
    assert config.agent_service.max_staleness == timedelta(minutes=5)


@pytest.mark.parametrize(
    ("name", "auth", "agent"), [("lockd-auth.yaml", True, False), ("lockd-agent.yaml", False, True)]
)
def test_separate_machine_examples_are_valid(name: str, auth: bool, agent: bool) -> None:
    """The auth-only and agent-only examples load and enable exactly their service."""
    config = load_config(EXAMPLES / name)

    assert config.auth_service.enabled is auth
    assert config.agent_service.enabled is agent


# --------------------------------------------------------------------------- refusals

INVALID = [
    # unknown keys, with their path and a suggestion
    ("cluster_nam: x\n", 'cluster_nam: unknown key; did you mean "cluster_name"?'),
    ("auth_service:\n  enabled: true\n  listen: x\n", "auth_service.listen: unknown key"),
    (
        "auth_service:\n  enabled: true\n  storage: {kind: sqlite}\n",
        "auth_service.storage.kind: unknown key",
    ),
    ("zzz: 1\n", "zzz: unknown key (known keys: cluster_name, data_dir, log"),
    # YAML 1.1 traps
    ("cluster_name: no\n", "cluster_name: must be a string, got boolean false (YAML reads"),
    ("cluster_name: 123\n", "cluster_name: must be a string, got number 123 (quote the value)"),
    (
        "agent_service:\n  enabled: true\n  server_id: 0123\n",
        "agent_service.server_id: must be a string, got number 0123",
    ),
    (
        "auth_service:\n  enabled: true\n  on: true\n",
        "auth_service.True: key boolean true is not a string",
    ),
    (
        "agent_service:\n  enabled: true\n  socket_mode: 660\n",
        "agent_service.socket_mode: 660 is read as a decimal number; write the mode in octal",
    ),
    (
        "auth_service:\n  enabled: true\n  heartbeat_interval: 1:30\n",
        'auth_service.heartbeat_interval: invalid duration "1:30"',
    ),
    ("auth_service:\n  enabled: true\nauth_service:\n  enabled: false\n", "duplicate key"),
    # types
    (
        'auth_service:\n  enabled: "yes"\n',
        'auth_service.enabled: must be true or false, got string "yes"',
    ),
    ("auth_service:\n  enabled: 1\n", "auth_service.enabled: must be true or false, got number 1"),
    ("auth_service:\n  enabled: true\n  insecure: null\n", "auth_service.insecure: must be true"),
    ("log: [json]\nauth_service: {enabled: true}\n", "log: must be a mapping, got a list"),
    ("- a\n- b\n", "config: must be a mapping, got a list"),
    ("auth_service: yes\n", "auth_service: must be a mapping, got boolean true"),
    ("audit: {sink: 5}\nauth_service: {enabled: true}\n", "audit.sink: must be a string"),
    # durations
    (
        "auth_service:\n  enabled: true\n  heartbeat_interval: 5\n",
        'auth_service.heartbeat_interval: invalid duration "5": missing unit',
    ),
    (
        "auth_service:\n  enabled: true\n  heartbeat_interval: 5 s\n",
        'auth_service.heartbeat_interval: invalid duration "5 s": unknown unit',
    ),
    (
        "auth_service:\n  enabled: true\n  heartbeat_interval: 1ms\n",
        "auth_service.heartbeat_interval: 1ms is shorter than the minimum 10ms",
    ),
    (
        "auth_service:\n  enabled: true\n  heartbeat_interval: 2m\n",
        "auth_service.heartbeat_interval: 2m0s is longer than the maximum 1m0s",
    ),
    (
        "auth_service:\n  enabled: true\n  heartbeat_interval: [5s]\n",
        "auth_service.heartbeat_interval: must be a duration such as 5s or 1m30s, got a list",
    ),
    (
        "agent_service:\n  enabled: true\n  max_staleness: 500ms\n",
        "agent_service.max_staleness: 500ms is shorter than the minimum 1s",
    ),
    (
        "agent_service:\n  enabled: true\n  max_staleness: -5m\n",
        'agent_service.max_staleness: invalid duration "-5m": durations may not carry a sign',
    ),
    # choices
    (
        "auth_service:\n  enabled: true\n  authentication: {locking_mode: x}\n",
        'auth_service.authentication.locking_mode: locking mode "x" not supported',
    ),
    (
        "auth_service:\n  enabled: true\n  authentication: {locking_mode: Strict}\n",
        'auth_service.authentication.locking_mode: locking mode "Strict" not supported',
    ),
    (
        "auth_service:\n  enabled: true\n  storage: {type: pg}\n",
        'auth_service.storage.type: storage type "pg" not supported (supported: sqlite, '
        "memory, postgres)",
    ),
    ("log: {format: xml}\nauth_service: {enabled: true}\n", 'log.format: log format "xml" not'),
    ("log: {level: WARN}\nauth_service: {enabled: true}\n", 'log.level: log level "WARN" not'),
    # addresses
    (
        "auth_service:\n  enabled: true\n  listen_addr: localhost\n",
        'auth_service.listen_addr: invalid address "localhost": want host:port',
    ),
    (
        "auth_service:\n  enabled: true\n  listen_addr: ::1:3025\n",
        'auth_service.listen_addr: invalid address "::1:3025": want host:port',
    ),
    (
        "auth_service:\n  enabled: true\n  listen_addr: 127.0.0.1:99999\n",
        'auth_service.listen_addr: invalid address "127.0.0.1:99999": port 99999 is not in',
    ),
    (
        "auth_service:\n  enabled: true\n  listen_addr: 127.0.0.1:http\n",
        'port "http" is not a number',
    ),
    (
        "auth_service:\n  enabled: true\n  listen_addr: 3025\n",
        "auth_service.listen_addr: must be a host:port string, got number 3025",
    ),
    (
        "auth_service:\n  enabled: true\n  metrics_addr: 127.0.0.1:3025\n",
        'auth_service.metrics_addr: "127.0.0.1:3025" is already used by auth_service.listen_addr',
    ),
    (
        "agent_service:\n  enabled: true\n  auth_servers: 127.0.0.1:3025\n",
        "agent_service.auth_servers: must be a list of host:port addresses, got string",
    ),
    (
        "agent_service:\n  enabled: true\n  auth_servers: []\n",
        "agent_service.auth_servers: must name at least one auth server",
    ),
    (
        "agent_service:\n  enabled: true\n  auth_servers: [a:1, b:0]\n",
        'agent_service.auth_servers[1]: invalid address "b:0": port 0 is not in 1..65535',
    ),
    (
        "agent_service:\n  enabled: true\n  auth_servers: [a:1, a:1]\n",
        'agent_service.auth_servers[1]: "a:1" is listed twice',
    ),
    (
        "agent_service:\n  enabled: true\n  auth_servers: [3025]\n",
        "agent_service.auth_servers[0]: must be a host:port string, got number 3025",
    ),
    # socket modes
    (
        'agent_service:\n  enabled: true\n  socket_mode: "0689"\n',
        'agent_service.socket_mode: invalid mode "0689": want octal digits',
    ),
    (
        "agent_service:\n  enabled: true\n  socket_mode: 0400\n",
        "agent_service.socket_mode: mode 0400 must let the owner read and write",
    ),
    (
        'agent_service:\n  enabled: true\n  socket_mode: "01777"\n',
        "agent_service.socket_mode: mode 0o1777 is not a permission mode",
    ),
    (
        "agent_service:\n  enabled: true\n  socket_mode: true\n",
        'agent_service.socket_mode: must be an octal mode such as "0660", got boolean true',
    ),
    # names and paths
    ("cluster_name: ''\nauth_service: {enabled: true}\n", "cluster_name: must not be empty"),
    ("cluster_name: a b\nauth_service: {enabled: true}\n", 'cluster_name: "a b" must be at most'),
    (
        "agent_service:\n  enabled: true\n  server_id: a/b\n",
        'agent_service.server_id: server_id "a/b" may not contain',
    ),
    ("data_dir: ''\nauth_service: {enabled: true}\n", "data_dir: must not be empty"),
    (
        "auth_service:\n  enabled: true\n  storage: {path: ''}\n",
        "auth_service.storage.path: must not be empty",
    ),
    # the whole
    ("cluster_name: x\n", "nothing to run: set auth_service.enabled or agent_service.enabled"),
    (
        "auth_service: {enabled: true, heartbeat_interval: 10s}\n"
        "agent_service: {enabled: true, max_staleness: 5s}\n",
        "agent_service.max_staleness: 5s must be longer than auth_service.heartbeat_interval (10s)",
    ),
    (
        "auth_service: {enabled: true, metrics_addr: 127.0.0.1:9000}\n"
        "agent_service: {enabled: true, metrics_addr: 127.0.0.1:9000}\n",
        'agent_service.metrics_addr: "127.0.0.1:9000" is already used by auth_service.metrics_addr',
    ),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_config_is_refused_with_the_key_path(
    tmp_path: Path, text: str, message: str
) -> None:
    """Each broken rule raises ValidationError naming the file, the key path and the rule."""
    with pytest.raises(ValidationError, match=re.escape(message)) as caught:
        load_text(tmp_path, text)

    assert str(caught.value).startswith(f"{tmp_path / 'lockd.yaml'}: ")


def test_parse_config_errors_carry_only_the_key_path() -> None:
    """Without a source file the message starts with the key path itself."""
    with pytest.raises(ValidationError) as caught:
        parse_config({"auth_service": {"enabled": True, "heartbeat_interval": "5"}}, env={})

    assert str(caught.value) == (
        'auth_service.heartbeat_interval: invalid duration "5": missing unit '
        "(use a number with a unit, e.g. 90s, 10h or 1h30m)"
    )


@pytest.mark.parametrize(
    ("spelled", "mode"),
    [("0660", 0o660), ("0640", 0o640), ('"0600"', 0o600), ('"660"', 0o660), ('"0o770"', 0o770)],
)
def test_socket_mode_accepts_octal_spellings(tmp_path: Path, spelled: str, mode: int) -> None:
    """socket_mode takes a YAML octal number or a quoted octal string."""
    config = load_text(tmp_path, f"agent_service:\n  enabled: true\n  socket_mode: {spelled}\n")

    assert config.agent_service.socket_mode == mode


def test_disabled_services_are_still_validated(tmp_path: Path) -> None:
    """A typo in a disabled section is refused too: it would bite when enabled."""
    with pytest.raises(ValidationError, match=r"agent_service\.max_staleness: invalid duration"):
        load_text(
            tmp_path,
            "auth_service: {enabled: true}\nagent_service: {enabled: false, max_staleness: 5}\n",
        )


# --------------------------------------------------------------------------- file errors


def test_missing_file_is_a_validation_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported with that path."""
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ValidationError, match=re.escape(f"{missing}: config file not found")):
        load_config(missing)


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    """Broken YAML is reported as invalid YAML with the file's path."""
    path = tmp_path / "lockd.yaml"
    path.write_text("auth_service: [unclosed\n", encoding="utf-8")

    with pytest.raises(ValidationError, match=re.escape(f"{path}: invalid YAML")):
        load_config(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    """An empty file is an error: it enables nothing and is most likely a mistake."""
    with pytest.raises(ValidationError, match="the config file is empty"):
        load_text(tmp_path, "# nothing here\n")


def test_several_documents_are_refused(tmp_path: Path) -> None:
    """A config file holds exactly one YAML document."""
    with pytest.raises(ValidationError, match="expected one YAML document, found 2"):
        load_text(tmp_path, "auth_service: {enabled: true}\n---\ncluster_name: x\n")


# --------------------------------------------------------------------------- server_id


def test_server_id_is_generated_once_and_persisted(tmp_path: Path) -> None:
    """Without a configured server_id a UUIDv4 is written to <data_dir>/server_id and reused."""
    config = default_config(tmp_path / "data")

    first = resolve_server_id(config)
    second = resolve_server_id(default_config(tmp_path / "data"))

    assert first == second
    assert uuid.UUID(first).version == 4
    assert (tmp_path / "data" / "server_id").read_text(encoding="utf-8").strip() == first
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["server_id"]


def test_configured_server_id_wins_and_writes_nothing(tmp_path: Path) -> None:
    """agent_service.server_id is used as is; no file is created."""
    config = parse_config(
        {"data_dir": str(tmp_path), "agent_service": {"enabled": True, "server_id": "node-7"}},
        env={},
    )

    assert resolve_server_id(config) == "node-7"
    assert not (tmp_path / "server_id").exists()


def test_corrupt_server_id_file_is_refused(tmp_path: Path) -> None:
    """An empty or mangled server_id file is an error, not silently regenerated."""
    (tmp_path / "server_id").write_text("\n", encoding="utf-8")

    with pytest.raises(ValidationError, match="server_id must not be empty"):
        resolve_server_id(default_config(tmp_path))

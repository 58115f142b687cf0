"""The proxy's config file: defaults, relative paths, and a clear error for each mistake."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lockd.domain.errors import ValidationError
from lockd.proxy.proxy_config import parse_proxy_config

BASE = Path("/etc/lockd")


def minimal(**listener: Any) -> dict[str, Any]:
    entry = {
        "name": "db",
        "protocol": "postgres",
        "listen_addr": "127.0.0.1:5433",
        "upstream": {"unix_socket": "/run/pg/.s.PGSQL.5432", "database_user": "app"},
        **listener,
    }
    return {
        "agent_socket": "/var/lib/lockd/agent.sock",
        "tls": {"cert_file": "proxy.crt", "key_file": "proxy.key", "client_ca_file": "ca.crt"},
        "listeners": [entry],
    }


def test_a_minimal_file_gets_the_documented_defaults() -> None:
    """Limits default as docs/proxy.md says; relative paths are next to the file."""
    config = parse_proxy_config(minimal(), BASE)
    (listener,) = config.listeners
    assert config.tls.cert_file == BASE / "proxy.crt"
    assert config.shutdown_timeout == timedelta(seconds=10)
    assert listener.max_connections == 1000
    assert listener.handshake_timeout == timedelta(seconds=10)
    assert listener.idle_timeout == timedelta(hours=1)
    assert listener.buffer_bytes == 65536
    assert listener.upstream.database_user == "app"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"protocol": "mysql"}, 'listeners[0].protocol: protocol "mysql" not supported'),
        ({"listen_adr": "x"}, 'listeners[0].listen_adr: unknown key; did you mean "listen_addr"?'),
        (
            {"upstream": {"unix_socket": "/s"}},
            "listeners[0].upstream.database_user: is required for postgres",
        ),
        (
            {"upstream": {"address": "db:5432", "unix_socket": "/s", "database_user": "a"}},
            "listeners[0].upstream: set exactly one of address and unix_socket",
        ),
        ({"max_connections": 0}, "listeners[0].max_connections: 0 is not in 1..100000"),
        ({"handshake_timeout": "5"}, "listeners[0].handshake_timeout: invalid duration"),
    ],
)
def test_each_mistake_is_named_by_its_key(change: dict[str, Any], message: str) -> None:
    """A typo or a wrong value stops the proxy with the key's path and the rule."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        parse_proxy_config(minimal(**change), BASE)


def test_two_listeners_may_not_share_a_name() -> None:
    """Names identify listeners in logs; a duplicate is refused."""
    data = minimal()
    data["listeners"].append({**data["listeners"][0], "listen_addr": "127.0.0.1:5434"})
    with pytest.raises(ValidationError, match=r'listeners\[1\].name: "db" is used twice'):
        parse_proxy_config(data, BASE)


def test_tls_and_listeners_are_required() -> None:
    """Without them there is nothing to serve safely."""
    with pytest.raises(ValidationError, match="tls: is required"):
        parse_proxy_config({**minimal(), "tls": None}, BASE)
    with pytest.raises(ValidationError, match="listeners: must be a non-empty list"):
        parse_proxy_config({**minimal(), "listeners": []}, BASE)


def test_the_upstream_password_is_read_from_a_private_file(tmp_path: Path) -> None:
    """password_file's first line (relative to the config's directory), kept out of the
    config's repr; a file others may read, an empty one or a missing one is refused."""
    secret = tmp_path / "pg.pass"
    secret.write_text("s3cret\nignored\n")
    secret.chmod(0o600)
    upstream = {"address": "db:5432", "database_user": "app", "password_file": "pg.pass"}
    (listener,) = parse_proxy_config(minimal(upstream=upstream), tmp_path).listeners
    assert listener.upstream.password == "s3cret"
    assert "s3cret" not in repr(listener)
    where = "listeners[0].upstream.password_file: "
    secret.chmod(0o640)
    with pytest.raises(ValidationError, match=re.escape(where) + ".*must be private"):
        parse_proxy_config(minimal(upstream=upstream), tmp_path)
    secret.write_text("\n")
    secret.chmod(0o600)
    with pytest.raises(ValidationError, match=re.escape(where) + ".*holds no password"):
        parse_proxy_config(minimal(upstream=upstream), tmp_path)
    missing = {**upstream, "password_file": "absent"}
    with pytest.raises(ValidationError, match=re.escape(where) + "cannot read"):
        parse_proxy_config(minimal(upstream=missing), tmp_path)

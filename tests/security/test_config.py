"""The insecure (plaintext) flag is for local development: loopback addresses only."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockd.config import parse_config
from lockd.domain.errors import ValidationError


def auth_config(tmp_path: Path, **auth: object) -> dict[str, object]:
    return {"data_dir": str(tmp_path), "auth_service": {"enabled": True, **auth}}


def agent_config(tmp_path: Path, **agent: object) -> dict[str, object]:
    return {"data_dir": str(tmp_path), "agent_service": {"enabled": True, **agent}}


@pytest.mark.parametrize("address", ["0.0.0.0:3025", "10.1.2.3:3025", "auth.example.com:3025"])
def test_an_insecure_auth_server_on_a_non_loopback_address_is_refused(
    tmp_path: Path, address: str
) -> None:
    """The error names the key and the address that would carry plaintext."""
    with pytest.raises(ValidationError) as caught:
        parse_config(auth_config(tmp_path, insecure=True, listen_addr=address), env={})
    assert str(caught.value) == (
        f'auth_service.insecure: plaintext is only allowed on loopback addresses, not "{address}" '
        "(auth_service.listen_addr)"
    )


@pytest.mark.parametrize("address", ["127.0.0.1:3025", "localhost:3025", "[::1]:3025"])
def test_an_insecure_auth_server_on_loopback_is_accepted(tmp_path: Path, address: str) -> None:
    """Loopback plaintext is fine for a dev box."""
    config = parse_config(auth_config(tmp_path, insecure=True, listen_addr=address), env={})
    assert config.auth_service.insecure is True


def test_tls_is_the_default_whatever_the_address(tmp_path: Path) -> None:
    """Without the flag the auth server serves mTLS, on any address."""
    config = parse_config(auth_config(tmp_path, listen_addr="0.0.0.0:3025"), env={})
    assert config.auth_service.insecure is False


def test_an_insecure_agent_dialing_a_non_loopback_auth_server_is_refused(tmp_path: Path) -> None:
    """Every auth server an insecure agent dials must be on loopback."""
    with pytest.raises(ValidationError) as caught:
        parse_config(
            agent_config(tmp_path, insecure=True, auth_servers=["127.0.0.1:3025", "10.0.0.5:3025"]),
            env={},
        )
    assert str(caught.value) == (
        "agent_service.insecure: plaintext is only allowed on loopback addresses, not "
        '"10.0.0.5:3025" (agent_service.auth_servers)'
    )
    config = parse_config(
        agent_config(tmp_path, insecure=True, auth_servers=["127.0.0.1:3025"]), env={}
    )
    assert config.agent_service.insecure is True


def test_a_ca_pin_must_look_like_one(tmp_path: Path) -> None:
    """A pin that is not sha256:<64 hex> is refused before the agent dials anything."""
    with pytest.raises(ValidationError, match=r"^agent_service\.ca_pin: \"sha256:abc\" is not"):
        parse_config(agent_config(tmp_path, ca_pin="sha256:abc"), env={})

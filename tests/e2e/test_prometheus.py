"""A real Prometheus scrapes a real `lockd start` and loads lockd's alert rules.

Needs Debian's `prometheus` package; `make test` installs it when run as root.
Elsewhere the test skips and says why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "lockd-rules.yml"
LOCKD = Path(sys.executable).parent / "lockd"

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus/promtool not installed (make test installs Debian's prometheus as root)",
)


def _query(base: str, expression: str) -> list[dict[str, object]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    return list(body["data"]["result"])


def _wait_for(what: str, check: object, deadline: float = 60.0) -> None:
    ends = time.monotonic() + deadline
    while time.monotonic() < ends:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_prometheus_scrapes_the_auth_server_and_the_agent(socket_dir: Path) -> None:
    """Both endpoints are up, the agent reports SYNCED, and the rules load healthy."""
    auth_metrics, agent_metrics, web = free_port(), free_port(), free_port()
    listen = f"127.0.0.1:{free_port()}"
    config = socket_dir / "lockd.yaml"
    config.write_text(
        f"""
cluster_name: prom.test
data_dir: {socket_dir / "data"}
log: {{format: json, level: warning}}
auth_service:
  enabled: true
  listen_addr: {listen}
  join_listen_addr: 127.0.0.1:{free_port()}
  metrics_addr: 127.0.0.1:{auth_metrics}
  heartbeat_interval: 1s
agent_service:
  enabled: true
  auth_servers: [{listen}]
  metrics_addr: 127.0.0.1:{agent_metrics}
  max_staleness: 30s
"""
    )
    prometheus_config = socket_dir / "prometheus.yml"
    prometheus_config.write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{RULES}"]
scrape_configs:
  - job_name: lockd-auth
    static_configs: [{{targets: ["127.0.0.1:{auth_metrics}"]}}]
  - job_name: lockd-agent
    static_configs: [{{targets: ["127.0.0.1:{agent_metrics}"]}}]
"""
    )
    lockd = _start([str(LOCKD), "start", "--config", str(config)], socket_dir / "lockd.log")
    prometheus = _start(
        [
            "prometheus",
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={socket_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        socket_dir / "prometheus.log",
    )
    base = f"http://127.0.0.1:{web}"
    try:
        _wait_for("both lockd targets up", lambda: len(_query(base, "up == 1")) == 2)
        _wait_for(
            "the agent to report synced",
            lambda: _query(base, 'lockd_agent_state{state="synced"} == 1'),
        )
        assert _query(base, "lockd_watch_streams == 1")
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as response:
            groups = json.load(response)["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == RULES.read_text().count("- alert:")
        assert all(rule["health"] in ("ok", "unknown") for rule in rules)
    finally:
        _stop(prometheus)
        _stop(lockd)

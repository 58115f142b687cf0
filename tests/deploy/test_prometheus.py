"""deploy/prometheus checked by promtool: the config, the rules, and the rules' unit
tests (lockd-rules.test.yml: each alert fires when it should and not before)."""

from __future__ import annotations

import pytest

from tests.deploy.tools import DEPLOY, run, tool

PROMETHEUS = DEPLOY / "prometheus"


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "lockd-rules.yml"],
        ["test", "rules", "lockd-rules.test.yml"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_promtool_accepts_the_prometheus_files(args: list[str]) -> None:
    """promtool check config / check rules / test rules all succeed."""
    result = run([tool("promtool"), *args], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    """Each alert named in the rules appears in an alert_rule_test."""
    rules = (PROMETHEUS / "lockd-rules.yml").read_text()
    tests = (PROMETHEUS / "lockd-rules.test.yml").read_text()
    alerts = [line.split(":", 1)[1].strip() for line in rules.splitlines() if "- alert:" in line]
    assert alerts
    for alert in alerts:
        assert f"alertname: {alert}" in tests, alert

"""deploy/grafana: the dashboard's every expression is PromQL that Prometheus parses
(promtool, as recording rules) and references only metrics lockd exports (the names
its registries really produce)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from lockd.obs.metrics import AgentMetrics, AuthMetrics, GrpcServerMetrics
from lockd.obs.process_metrics import register_process_metrics
from lockd.obs.proxy_metrics import ProxyMetrics
from tests.deploy.tools import DEPLOY, run, tool

DASHBOARD = DEPLOY / "grafana" / "lockd-dashboard.json"
# PromQL words that look like metric names once labels, ranges and strings are removed.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _exported_names() -> set[str]:
    """Every sample name an auth server's, an agent's and a proxy's registries expose."""
    registry = CollectorRegistry()
    auth, agent = AuthMetrics(registry), AgentMetrics(registry)
    ProxyMetrics(registry)
    grpc = GrpcServerMetrics(registry)
    register_process_metrics(registry, lambda: True)
    agent.lock_propagation_seconds.observe(0.1)
    auth.store_operation_seconds.labels(operation="put").observe(0.001)
    grpc.handled_total.labels("s", "m", "unary", "OK").inc()
    return {sample.name for family in registry.collect() for sample in family.samples}


def _metric_names(expression: str) -> set[str]:
    text = expression.replace("$__rate_interval", "5m")
    text = re.sub(r'"[^"]*"', "", text)  # label values
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        if not rest.startswith("(") and match.group() not in KEYWORDS:
            names.add(match.group())
    return names


def test_every_panel_queries_only_metrics_lockd_exports() -> None:
    """Each expression names at least one metric, and every name is exported."""
    exported = _exported_names()
    for expression in _expressions():
        names = _metric_names(expression)
        assert names, expression
        assert names <= exported, (expression, names - exported)


def test_prometheus_parses_every_expression(tmp_path: Path) -> None:
    """promtool check rules accepts each expression as a recording rule."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{index}", "expr": expression}
                    for index, expression in enumerate(
                        expression.replace("$__rate_interval", "5m")
                        for expression in _expressions()
                    )
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.json"
    path.write_text(json.dumps(rules))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_covers_what_operators_watch() -> None:
    """Propagation latency, agents by state, lag, locks by kind, terminations, store."""
    text = " ".join(_expressions())
    for metric in (
        "lockd_agent_lock_propagation_seconds_bucket",
        "lockd_connected_agents",
        "lockd_watch_lag_max_revisions",
        "lockd_locks_in_force",
        "lockd_agent_terminations_total",
        "lockd_store_operation_seconds_bucket",
    ):
        assert metric in text

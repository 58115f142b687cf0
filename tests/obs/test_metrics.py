"""lockd.obs.metrics: names and labels on an injected registry, served over real HTTP."""

from __future__ import annotations

import threading
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from lockd.domain.errors import ValidationError
from lockd.domain.lock import Lock, LockTarget
from lockd.obs.http_endpoint import MetricsEndpoint
from lockd.obs.metrics import AgentMetrics, AuthMetrics, GrpcServerMetrics


def scrape(endpoint: MetricsEndpoint) -> list[str]:
    with urllib.request.urlopen(endpoint.url, timeout=5) as response:
        assert response.status == 200
        body: bytes = response.read()
    return [line for line in body.decode().splitlines() if not line.startswith("#")]


def test_metrics_are_exported_over_http_with_their_names() -> None:
    """A scrape of the endpoint (port 0, 127.0.0.1) lists the lockd_ and grpc_server_ series."""
    registry = CollectorRegistry()
    auth, agent, grpc = AuthMetrics(registry), AgentMetrics(registry), GrpcServerMetrics(registry)
    auth.watch_streams.set(3)
    auth.events_sent_total.inc(5)
    auth.resets_total.labels(reason="slow_consumer").inc()
    agent.set_state("synced")
    agent.terminations_total.labels(reason="strict_stale").inc(2)
    agent.access_checks_total.labels(decision="denied", mode="strict").inc()
    agent.lock_propagation_seconds.observe(0.003)
    grpc.handled_total.labels("lockd.v1.LockService", "CreateLock", "unary", "OK").inc()

    with MetricsEndpoint(registry, "127.0.0.1:0") as endpoint:
        assert endpoint.port != 0
        lines = scrape(endpoint)

    assert "lockd_watch_streams 3.0" in lines
    assert "lockd_events_sent_total 5.0" in lines
    assert 'lockd_resets_total{reason="slow_consumer"} 1.0' in lines
    assert 'lockd_resets_total{reason="too_old"} 0.0' in lines
    assert 'lockd_locks_in_force{target_kind="user"} 0.0' in lines
    assert "lockd_store_healthy 0.0" in lines
    assert "lockd_revision 0.0" in lines
    assert "lockd_watch_lag_max_revisions 0.0" in lines
    assert "lockd_snapshots_sent_total 0.0" in lines
    assert "lockd_event_batches_sent_total 0.0" in lines
    assert 'lockd_agent_state{state="synced"} 1.0' in lines
    assert 'lockd_agent_state{state="syncing"} 0.0' in lines
    assert 'lockd_agent_terminations_total{reason="strict_stale"} 2.0' in lines
    assert 'lockd_agent_access_checks_total{decision="denied",mode="strict"} 1.0' in lines
    assert 'lockd_agent_access_checks_total{decision="allowed",mode="best_effort"} 0.0' in lines
    assert 'lockd_agent_lock_propagation_seconds_bucket{le="0.001"} 0.0' in lines
    assert 'lockd_agent_lock_propagation_seconds_bucket{le="0.005"} 1.0' in lines
    assert 'lockd_agent_lock_propagation_seconds_bucket{le="10.0"} 1.0' in lines
    assert "lockd_agent_sessions 0.0" in lines
    assert "lockd_agent_view_revision 0.0" in lines
    assert "lockd_agent_view_age_seconds 0.0" in lines
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="CreateLock",'
        'grpc_service="lockd.v1.LockService",grpc_type="unary"} 1.0'
    ) in lines


def test_every_metric_name_follows_the_conventions() -> None:
    """lockd_ prefix (grpc_server_ for gRPC), counters end in _total, times in _seconds."""
    registry = CollectorRegistry()
    AuthMetrics(registry)
    AgentMetrics(registry)
    GrpcServerMetrics(registry)

    families = list(registry.collect())

    assert families
    for family in families:
        assert family.name.startswith(("lockd_", "grpc_server_")), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name


def test_definitions_never_touch_the_global_registry() -> None:
    """Metrics go only to the injected registry; two sets can coexist in one process."""
    before = set(REGISTRY._names_to_collectors)

    first, second = CollectorRegistry(), CollectorRegistry()
    AuthMetrics(first).watch_streams.set(1)
    AuthMetrics(second).watch_streams.set(2)

    assert set(REGISTRY._names_to_collectors) == before
    assert first.get_sample_value("lockd_watch_streams") == 1
    assert second.get_sample_value("lockd_watch_streams") == 2


def test_locks_in_force_counts_a_lock_under_each_of_its_kinds() -> None:
    """set_locks_in_force tallies each target field; kinds without locks drop back to 0."""
    registry = CollectorRegistry()
    auth = AuthMetrics(registry)
    auth.set_locks_in_force([Lock("a", LockTarget(device="d1"))])
    now = datetime(2024, 1, 1, tzinfo=UTC)

    auth.set_locks_in_force(
        [
            Lock("l1", LockTarget(user="alice", server_id="s1"), created_at=now),
            Lock("l2", LockTarget(user="bob")),
        ]
    )

    def value(kind: str) -> float | None:
        return registry.get_sample_value("lockd_locks_in_force", {"target_kind": kind})

    assert value("user") == 2
    assert value("server_id") == 1
    assert value("device") == 0


def test_agent_state_is_one_hot() -> None:
    """set_state marks exactly one state 1; unknown states are refused."""
    registry = CollectorRegistry()
    agent = AgentMetrics(registry)

    agent.set_state("stale")

    values = {
        state: registry.get_sample_value("lockd_agent_state", {"state": state})
        for state in ("syncing", "synced", "degraded", "stale")
    }
    assert values == {"syncing": 0, "synced": 0, "degraded": 0, "stale": 1}
    with pytest.raises(ValidationError, match="unknown agent state"):
        agent.set_state("confused")


def test_endpoint_stop_releases_the_port_and_its_thread() -> None:
    """After stop() nothing listens and the server thread is gone; stop() is idempotent."""
    threads_before = set(threading.enumerate())
    endpoint = MetricsEndpoint(CollectorRegistry(), "127.0.0.1:0")
    endpoint.start()
    url = endpoint.url

    endpoint.stop()
    endpoint.stop()

    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(OSError):  # noqa: PT011 - connection refused, whichever subclass
        urllib.request.urlopen(url, timeout=2)


def test_endpoint_refuses_a_malformed_address() -> None:
    """The address must be host:port."""
    with pytest.raises(ValidationError, match="want host:port"):
        MetricsEndpoint(CollectorRegistry(), "localhost")

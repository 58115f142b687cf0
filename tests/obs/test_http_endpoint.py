"""lockd.obs.http_endpoint: /healthz and /readyz next to /metrics, over real HTTP."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from lockd.domain.readiness import Readiness
from lockd.obs.http_endpoint import MetricsEndpoint
from tests.support import http_get


def _get(endpoint: MetricsEndpoint, path: str) -> tuple[int, str]:
    return http_get(endpoint.url.removesuffix("/metrics") + path)


def test_the_probes_answer_200_or_503_with_the_checks_detail() -> None:
    """/readyz follows the readiness check, /healthz the liveness check, each one line."""
    state = {"ready": False}

    def ready() -> Readiness:
        return Readiness(state["ready"], "ready" if state["ready"] else "loading the store")

    with MetricsEndpoint(
        CollectorRegistry(), "127.0.0.1:0", ready=ready, live=lambda: Readiness(True, "alive")
    ) as endpoint:
        assert _get(endpoint, "/readyz") == (503, "loading the store\n")
        assert _get(endpoint, "/healthz") == (200, "alive\n")
        state["ready"] = True
        assert _get(endpoint, "/readyz") == (200, "ready\n")
        assert _get(endpoint, "/metrics")[0] == 200


def test_without_checks_the_probes_answer_ok() -> None:
    """An endpoint given no checks (e.g. the proxy's) still answers its probes."""
    with MetricsEndpoint(CollectorRegistry(), "127.0.0.1:0") as endpoint:
        assert _get(endpoint, "/readyz") == (200, "ok\n")


def test_ipv6_loopback_is_served() -> None:
    """`[::1]:0` binds the IPv6 loopback."""
    try:
        endpoint = MetricsEndpoint(CollectorRegistry(), "[::1]:0")
        endpoint.start()
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        assert _get(endpoint, "/healthz") == (200, "ok\n")
    finally:
        endpoint.stop()

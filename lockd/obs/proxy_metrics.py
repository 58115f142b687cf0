"""Prometheus metrics of `lockd proxy` (docs/proxy.md lists them).

Labels are the listener's protocol, a result or reason, a direction: never a user,
address or listener name. Known label values start at zero.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

PROXY_PROTOCOLS = ("postgres", "tcp")
CONNECTION_RESULTS = (
    "accepted",  # identity verified, session registered, upstream logged in
    "denied",  # the agent refused the session (a lock, strict mode)
    "tls_failed",  # no, foreign or expired certificate; no TLS
    "handshake_timeout",
    "protocol_error",
    "over_limit",
    "agent_unavailable",
    "upstream_failed",
)
TERMINATION_REASONS = ("lock", "server_lock", "strict_stale", "agent_unavailable", "shutdown")
DIRECTIONS = ("to_upstream", "to_client")


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.connections_total = Counter(
            "lockd_proxy_connections",
            "Client connections by protocol and result.",
            ["protocol", "result"],
            registry=registry,
        )
        self.active_connections = Gauge(
            "lockd_proxy_active_connections",
            "Connections open now (handshaking or relaying), by protocol.",
            ["protocol"],
            registry=registry,
        )
        self.bytes_relayed_total = Counter(
            "lockd_proxy_relayed_bytes",
            "Bytes relayed, by protocol and direction (to_upstream, to_client).",
            ["protocol", "direction"],
            registry=registry,
        )
        self.terminations_total = Counter(
            "lockd_proxy_terminations",
            "Live connections ended by the proxy, by protocol and reason: lock, "
            "server_lock, strict_stale (the agent's signal), agent_unavailable (strict "
            "sessions when the agent is lost), shutdown.",
            ["protocol", "reason"],
            registry=registry,
        )
        for protocol in PROXY_PROTOCOLS:
            self.active_connections.labels(protocol=protocol)
            for result in CONNECTION_RESULTS:
                self.connections_total.labels(protocol=protocol, result=result)
            for direction in DIRECTIONS:
                self.bytes_relayed_total.labels(protocol=protocol, direction=direction)
            for reason in TERMINATION_REASONS:
                self.terminations_total.labels(protocol=protocol, reason=reason)

"""Prometheus metric definitions (served by lockd.obs.http_endpoint).

Every metric lives on a `CollectorRegistry` handed in by the composition root (never the
process-global one), so tests and an auth server + agent in one process stay apart.
Conventions: `lockd_` prefix, base units (`_seconds`), counters end in `_total`, labels
carry low-cardinality kinds and reasons only — never a user, lock or server name.

Auth server metrics are `lockd_<name>`, agent metrics `lockd_agent_<name>`; the gRPC
server metrics keep the customary `grpc_server_*` names (`GrpcServerMetrics`, one per
registry, shared by whichever servers export on that registry). docs/config.md lists them
all (section "Metrics").

Known label values are pre-initialised to zero so that a series exists before its first
event (`rate()` and absence alerts then work from the start).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lockd.domain.errors import ValidationError
from lockd.domain.lock import TARGET_FIELDS, Lock
from lockd.domain.modes import LockingMode
from lockd.obs.loop_metrics import LoopCounter, LoopHistogram

# Label values known in advance (pre-initialised); others are accepted but appear lazily.
TARGET_KINDS: tuple[str, ...] = TARGET_FIELDS
RESET_REASONS = (
    "too_old",
    "epoch_changed",
    "slow_consumer",
    "ahead_of_server",
    "shutdown",
    "overloaded",
    "locked",
)
AGENT_STATES = ("syncing", "synced", "degraded", "stale")
# Why an agent took a full snapshot: a gap in revisions, the log no longer reaching back
# to its revision, or a new store history.
RESYNC_REASONS = ("gap", "too_old", "epoch_changed")
TERMINATION_REASONS = ("lock", "strict_stale", "server_lock")
SIDECAR_CHANNEL_END_REASONS = ("closed", "gone", "invalid", "slow_consumer", "shutdown")
ACCESS_DECISIONS = ("allowed", "denied")
ACCESS_MODES: tuple[str, ...] = tuple(mode.value for mode in LockingMode)

# Store calls: sub-millisecond (memory, sqlite page-cache hits) to seconds (fsync storms).
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Lock created_at → applied on the agent: 1 ms to 10 s.
SESSION_PROTOCOLS = ("unspecified", "ssh", "db", "app", "desktop", "k8s", "tcp")
PROPAGATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# gRPC handling time: unary calls are fast; streams live for as long as the agent is up,
# so the long buckets only tell "ended after hours".
GRPC_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600, 3600)


class AuthMetrics:
    """Metrics of the auth server: lock set, watch fan-out, store and agents' lag."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.locks_in_force = Gauge(
            "lockd_locks_in_force",
            "Locks in force by target kind; a lock with several target fields counts once "
            "under each of its kinds, so the sum over kinds can exceed the number of locks.",
            ["target_kind"],
            registry=registry,
        )
        self.watch_streams = Gauge(
            "lockd_watch_streams", "Open WatchLocks streams (connected agents).", registry=registry
        )
        self.events_sent_total = LoopCounter(
            "lockd_events_sent",
            "Events delivered to watch streams (one per event per stream).",
            registry=registry,
        )
        self.event_batches_sent_total = LoopCounter(
            "lockd_event_batches_sent",
            "Events messages (batches of contiguous revisions) delivered to watch streams.",
            registry=registry,
        )
        self.resets_total = Counter(
            "lockd_resets",
            "Watch streams ended with a Reset, by reason.",
            ["reason"],
            registry=registry,
        )
        self.snapshots_sent_total = Counter(
            "lockd_snapshots_sent",
            "Full snapshots sent to agents (new agents, or resumes that fell out of the log).",
            registry=registry,
        )
        self.store_operation_seconds = Histogram(
            "lockd_store_operation_seconds",
            "Duration of store calls, by operation (put, delete, snapshot, events_since, ...).",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.store_healthy = Gauge(
            "lockd_store_healthy",
            "1 when the last store operation succeeded, 0 after a failure.",
            registry=registry,
        )
        self.revision = Gauge(
            "lockd_revision", "Latest committed revision of the store.", registry=registry
        )
        # Named for the watch streams, not `lockd_agent*`: agents export those names.
        self.watch_lag_max_revisions = Gauge(
            "lockd_watch_lag_max_revisions",
            "Largest lag, in revisions, among the agents streaming from this server: the "
            "current revision minus the agent's last acknowledged revision (0 when every "
            "agent is up to date or none is connected).",
            registry=registry,
        )
        self.connected_agents = Gauge(
            "lockd_connected_agents",
            "Agents streaming from this server, by the sync state they last reported.",
            ["state"],
            registry=registry,
        )
        for kind in TARGET_KINDS:
            self.locks_in_force.labels(target_kind=kind)
        for reason in RESET_REASONS:
            self.resets_total.labels(reason=reason)
        for state in AGENT_STATES:
            self.connected_agents.labels(state=state)

    def set_locks_in_force(self, locks: Iterable[Lock]) -> None:
        """Set `locks_in_force` for every kind from the locks in force (absent kinds: 0)."""
        tally = Tally(field for lock in locks for field, _ in lock.target.pairs())
        for kind in TARGET_KINDS:
            self.locks_in_force.labels(target_kind=kind).set(tally.get(kind, 0))


class AgentMetrics:
    """Metrics of a node agent: its view of the locks, its state and its sessions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.view_revision = Gauge(
            "lockd_agent_view_revision",
            "Revision of the agent's lock view (the last one applied).",
            registry=registry,
        )
        self.view_age_seconds = Gauge(
            "lockd_agent_view_age_seconds",
            "Seconds since the agent last held proof that its view was current (fresh_at).",
            registry=registry,
        )
        self.state = Gauge(
            "lockd_agent_state",
            "Sync state of the agent: 1 for the current state, 0 for the others.",
            ["state"],
            registry=registry,
        )
        self.resyncs_total = Counter(
            "lockd_agent_resyncs",
            "Times the agent fell back to a full snapshot, by reason.",
            ["reason"],
            registry=registry,
        )
        self.sessions = Gauge(
            "lockd_agent_sessions", "Live sessions registered with the agent.", registry=registry
        )
        self.terminations_total = Counter(
            "lockd_agent_terminations",
            "Sessions terminated, by reason kind: lock (a lock hit the session), "
            "strict_stale (strict mode with a stale view), server_lock (a lock on this "
            "agent's server_id).",
            ["reason"],
            registry=registry,
        )
        self.access_checks_total = Counter(
            "lockd_agent_access_checks",
            "Access checks (session registrations and CheckAccess), by decision and mode.",
            ["decision", "mode"],
            registry=registry,
        )
        self.lock_propagation_seconds = LoopHistogram(
            "lockd_agent_lock_propagation_seconds",
            "Seconds from a lock's created_at on the auth server to its application here.",
            buckets=PROPAGATION_BUCKETS,
            registry=registry,
        )
        self.sessions_by_protocol = Gauge(
            "lockd_agent_sessions_by_protocol",
            "Live sessions registered with the agent, by the protocol their sidecar gave.",
            ["protocol"],
            registry=registry,
        )
        self.session_registrations_total = Counter(
            "lockd_agent_session_registrations",
            "Session registrations on sidecar channels, by result: allowed, denied (a "
            "lock or the strict lock-out), invalid (refused before any check).",
            ["result"],
            registry=registry,
        )
        self.sidecar_channels = Gauge(
            "lockd_agent_sidecar_channels", "Open sidecar session channels.", registry=registry
        )
        self.sidecar_channels_ended_total = Counter(
            "lockd_agent_sidecar_channels_ended",
            "Sidecar channels that ended, by reason: closed (the sidecar half-closed), gone "
            "(its stream broke), invalid (bad input), slow_consumer (it stopped reading: "
            "backlog bound), shutdown (the agent stops).",
            ["reason"],
            registry=registry,
        )
        self.termination_propagation_seconds = LoopHistogram(
            "lockd_agent_termination_propagation_seconds",
            "Seconds from a lock's created_at on the auth server to the termination of "
            "the sessions it hit being handed to their sidecar channels.",
            buckets=PROPAGATION_BUCKETS,
            registry=registry,
        )
        for protocol in SESSION_PROTOCOLS:
            self.sessions_by_protocol.labels(protocol=protocol)
        for result in ("allowed", "denied", "invalid"):
            self.session_registrations_total.labels(result=result)
        for state in AGENT_STATES:
            self.state.labels(state=state).set(1 if state == "syncing" else 0)
        for reason in TERMINATION_REASONS:
            self.terminations_total.labels(reason=reason)
        for reason in SIDECAR_CHANNEL_END_REASONS:
            self.sidecar_channels_ended_total.labels(reason=reason)
        for reason in RESYNC_REASONS:
            self.resyncs_total.labels(reason=reason)
        for decision in ACCESS_DECISIONS:
            for mode in ACCESS_MODES:
                self.access_checks_total.labels(decision=decision, mode=mode)

    def set_state(self, state: str) -> None:
        """Make `state` the current one (1) and every other state 0."""
        if state not in AGENT_STATES:
            raise ValidationError(f'unknown agent state "{state}" ({", ".join(AGENT_STATES)})')
        for name in AGENT_STATES:
            self.state.labels(state=name).set(1 if name == state else 0)


class GrpcServerMetrics:
    """The customary grpc_server_* metrics (as go-grpc-prometheus names them).

    `grpc_type` is unary, client_stream, server_stream or bidi_stream; `grpc_code` the
    status code name (OK, NOT_FOUND, ...). Register once per registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        method_labels = ["grpc_service", "grpc_method", "grpc_type"]
        self.started_total = Counter(
            "grpc_server_started",
            "RPCs started on the server.",
            method_labels,
            registry=registry,
        )
        self.handled_total = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            [*method_labels, "grpc_code"],
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its completion on the server.",
            method_labels,
            buckets=GRPC_BUCKETS,
            registry=registry,
        )
        self.msg_received_total = Counter(
            "grpc_server_msg_received",
            "Stream messages received from clients (1 per unary request).",
            method_labels,
            registry=registry,
        )
        self.msg_sent_total = Counter(
            "grpc_server_msg_sent",
            "Stream messages sent to clients (1 per unary response).",
            method_labels,
            registry=registry,
        )
        self.undecodable_requests_total = Counter(
            "lockd_grpc_undecodable_requests",
            "Request messages that could not be decoded (answered INVALID_ARGUMENT).",
            ["grpc_service"],
            registry=registry,
        )

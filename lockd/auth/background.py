"""The auth server's background loops: lock expiry, log compaction and store health.

Expiry commits an ordered EXPIRE event within a second of each lock's `expires` —
including locks that expired while the server was down, on the first pass after start.
With several replicas, expiry and compaction run on the leader only (`leader()`,
lockd.auth.leadership); a replica that is not the leader skips its passes.

Health is the replica's: the store answers and the hub is at the log's head
(`ReplicationHub.healthy`); the gRPC health status follows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from lockd.auth.auth_service import AuthService
from lockd.domain.errors import UnavailableError
from lockd.obs.metrics import AGENT_STATES, AuthMetrics

_log = structlog.get_logger("lockd.auth")

Leader = Callable[[], bool]

EXPIRY_INTERVAL = 0.25
COMPACTION_INTERVAL = 30.0
HEALTH_INTERVAL = 1.0
METRICS_INTERVAL = 2.0


def _always() -> bool:
    return True


async def expire_locks_forever(
    service: AuthService, leader: Leader = _always, interval: float = EXPIRY_INTERVAL
) -> None:
    while True:
        if leader():
            try:
                events = await service.store.expire_due(service.clock.now())
            except UnavailableError as error:
                _log.warning("expiry pass failed; will retry", error=str(error))
            else:
                if events:
                    service.publish_expired(events)
        await asyncio.sleep(interval)


async def compact_log_forever(
    service: AuthService, leader: Leader = _always, interval: float = COMPACTION_INTERVAL
) -> None:
    while True:
        await asyncio.sleep(interval)
        if not leader():
            continue
        try:
            dropped = await service.store.compact(service.clock.now())
        except UnavailableError as error:
            _log.warning("log compaction failed; will retry", error=str(error))
        else:
            if dropped:
                _log.info("compacted the event log", dropped=dropped)


async def watch_store_health_forever(
    service: AuthService,
    on_change: Callable[[bool], Awaitable[None]],
    interval: float = HEALTH_INTERVAL,
) -> None:
    """Probe the store while it is unhealthy; report every change of health."""
    healthy = service.hub.healthy
    await on_change(healthy)
    while True:
        await asyncio.sleep(interval)
        if not service.store.healthy:
            await service.store.check()
        if service.hub.healthy != healthy:
            healthy = service.hub.healthy
            _log.warning("store health changed", healthy=healthy)
            await on_change(healthy)


async def export_metrics_forever(
    service: AuthService, metrics: AuthMetrics, interval: float = METRICS_INTERVAL
) -> None:
    """Refresh the gauges that are cheaper to recompute now and then than per event."""
    while True:
        now = service.clock.now()
        revision = service.hub.revision
        metrics.set_locks_in_force(lock for lock in service.lock_index if lock.in_force(now))
        metrics.revision.set(revision)
        metrics.store_healthy.set(1 if service.store.healthy else 0)
        connected = service.agents.connected()
        lags = [
            revision - record.applied_revision
            for record in connected
            if record.epoch == service.hub.epoch
        ]
        metrics.watch_lag_max_revisions.set(max(lags, default=0))
        for state in AGENT_STATES:
            count = sum(1 for record in connected if record.state == state)
            metrics.connected_agents.labels(state=state).set(count)
        await asyncio.sleep(interval)

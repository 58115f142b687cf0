"""Readiness, liveness and systemd notifications of one running `lockd` process.

Each service the process runs (auth server, agent) contributes a readiness check
(`lockd.domain.readiness`); its metrics endpoint serves it at /readyz, and the process
as a whole is ready when all of them are. `ServiceHealth.running()` wraps the time the
daemon serves: it tells systemd READY=1 once ready, STATUS= whenever the summary
changes, WATCHDOG=1 when asked, and STOPPING=1 when the block ends — before the
services begin to stop. Liveness (/healthz) is the event loop's own heartbeat: the HTTP
thread answers even when the loop is stuck, the heartbeat does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import structlog

from lockd.domain.identity import Identity
from lockd.domain.readiness import Readiness, agent_readiness, auth_readiness
from lockd.obs.http_endpoint import HealthCheck
from lockd.obs.sd_notify import ServiceNotifier
from lockd.runtime.agent_app import AgentApp
from lockd.runtime.auth_app import AuthApp

_log = structlog.get_logger("lockd")

HEARTBEAT_INTERVAL = 1.0
# A loop that has not run its heartbeat for this long is wedged (GC pauses and a
# loaded machine stay far below it).
LIVENESS_BOUND = 30.0
STATUS_INTERVAL = 1.0


class ServiceHealth:
    def __init__(self, notifier: ServiceNotifier | None = None) -> None:
        self.notifier = notifier if notifier is not None else ServiceNotifier()
        self._checks: list[HealthCheck] = []
        self._stopping = False
        self._last_beat = time.monotonic()

    # -- checks -----------------------------------------------------------------------

    def auth_check(self, app: AuthApp) -> HealthCheck:
        """The started auth server's readiness: serving while its store is healthy."""

        def check() -> Readiness:
            return auth_readiness(True, self._stopping, app.store.healthy)

        self._checks.append(check)
        return check

    def agent_check(self, app: AgentApp) -> HealthCheck:
        """The started agent's readiness: its sync state and view, in the cluster's mode."""

        def check() -> Readiness:
            if self._stopping:
                return Readiness(False, "agent stopping")
            view = app.runtime.view
            return agent_readiness(
                app.runtime.sync_state(),
                bool(view.state.epoch),
                view.mode_for(Identity()),
                view.state.revision,
            )

        self._checks.append(check)
        return check

    def readiness(self) -> Readiness:
        """All services ready; the detail lists each one's."""
        results = [check() for check in self._checks]
        if not results:
            return Readiness(False, "starting")
        return Readiness(
            all(result.ready for result in results), "; ".join(r.detail for r in results)
        )

    def liveness(self) -> Readiness:
        age = time.monotonic() - self._last_beat
        if age > LIVENESS_BOUND:
            return Readiness(False, f"event loop stuck for {age:.0f}s")
        return Readiness(True, "alive")

    # -- the serving period -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """READY=1 / STATUS= / WATCHDOG=1 while the block runs, STOPPING=1 as it ends."""
        tasks = [
            asyncio.create_task(self._beat_forever()),
            asyncio.create_task(self.notifier.watchdog_forever()),
            asyncio.create_task(self._report_forever()),
        ]
        try:
            yield
        finally:
            self._stopping = True
            self.notifier.stopping()
            for task in tasks:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception):
                    _log.error("a health task failed", error=repr(result))

    async def _beat_forever(self) -> None:
        while True:
            self._last_beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_INTERVAL)

    async def _report_forever(self) -> None:
        announced, last_status = False, ""
        while True:
            readiness = self.readiness()
            if readiness.ready and not announced:
                self.notifier.ready(readiness.detail)
                announced, last_status = True, readiness.detail
            elif readiness.detail != last_status:
                self.notifier.status(readiness.detail)
                last_status = readiness.detail
            await asyncio.sleep(STATUS_INTERVAL)

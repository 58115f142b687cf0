"""One replica at a time runs the expiry reaper and log compaction: a lease in the store.

Every replica tries to take or renew the lease every `renew_every` seconds; the store
grants it to one holder until `ttl` after its last renewal, by the store's clock. A
replica counts itself leader only until `ttl` after it *asked* (its own monotonic clock),
so it stops before the lease can pass to another. When the holder dies or loses the
database, another replica takes over within `ttl + renew_every`.

The lease saves duplicate work; it is not what keeps an EXPIRE from being committed
twice — the store's expiry transaction does that on its own.

A store with one writer (memory, SQLite: the data-dir lock proves it) has no `Leases`:
its auth server is always the leader.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from lockd.domain.errors import UnavailableError
from lockd.domain.ports import Clock
from lockd.domain.replicas import Leases

_log = structlog.get_logger("lockd.auth.leadership")

REAPER_LEASE = "reaper"
LEASE_TTL = timedelta(seconds=3)
RENEW_EVERY = 1.0


class Leadership:
    def __init__(
        self,
        leases: Leases | None,
        holder: str,
        clock: Clock,
        *,
        name: str = REAPER_LEASE,
        ttl: timedelta = LEASE_TTL,
        renew_every: float = RENEW_EVERY,
    ) -> None:
        if leases is not None and renew_every >= ttl.total_seconds():
            raise ValueError("the lease must be renewed more often than it lasts")
        self._leases = leases
        self.holder = holder
        self._clock = clock
        self._name = name
        self._ttl = ttl
        self._renew_every = renew_every
        self._until = 0.0

    def is_leader(self) -> bool:
        return self._leases is None or self._clock.monotonic() < self._until

    async def run_forever(self) -> None:
        if self._leases is None:
            return
        leading = False
        while True:
            held = await self.renew()
            if held != leading:
                leading = held
                _log.info("leadership changed", lease=self._name, leader=held, holder=self.holder)
            await asyncio.sleep(self._renew_every)

    async def renew(self) -> bool:
        """Take or renew the lease once; whether this replica leads now."""
        if self._leases is None:
            return True
        asked = self._clock.monotonic()
        try:
            held = await self._leases.acquire_lease(self._name, self.holder, self._ttl)
        except UnavailableError as error:
            _log.warning("cannot renew the lease", lease=self._name, error=str(error))
            held = False
        self._until = asked + self._ttl.total_seconds() if held else 0.0
        return held

    async def release(self) -> None:
        """Give the lease up (a clean stop), so another replica takes over at once."""
        self._until = 0.0
        if self._leases is None:
            return
        try:
            await self._leases.release_lease(self._name, self.holder)
        except UnavailableError as error:
            _log.warning("could not release the lease", lease=self._name, error=str(error))

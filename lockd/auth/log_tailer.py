"""A replica's tail of the shared event log: every commit, its own and others', in order.

With several auth replicas on one database, a replica learns of the other replicas'
commits only from the log. `LogTailer` reads the log from the hub's revision whenever the
store announces a commit (NOTIFY) and at least every `poll_interval` (announcements are
not durable), and publishes what it read to the hub, whose one ordering path
(`ReplicationHub.publish`) applies each revision exactly once. The replica's own writes
still reach the hub at once through the same `publish` (the local fast path); the tail
brings whatever they did not.

Each pass ends by comparing the hub with the log's head:

- another epoch in the store: a new history (a restore, or another replica started
  one) — the hub reloads from a snapshot and every stream is reset;
- the store behind the hub in the same epoch: the store went back in time (a failover
  to an asynchronous standby lost commits that were served) — the tailer starts a new
  epoch in the store and reloads, so agents holding the lost revisions take a snapshot
  of what the store has instead of keeping it;
- after the store was unreachable, the event at the hub's revision is read back too: a
  store that went back and then moved past the hub's revision holds different events
  under the same numbers, which is the same lost history.

An agent that says it applied a revision the store does not have (`check_ahead`) is the
same case, noticed by a replica that never served the lost revisions itself.
"""

from __future__ import annotations

import asyncio

import structlog

from lockd.auth.hub import FETCH_LIMIT, ReplicationHub, ResetReason
from lockd.domain.errors import CompactedError, UnavailableError
from lockd.domain.events import Event, ReplicatedState
from lockd.domain.ports import Clock, Store
from lockd.domain.replicas import SharedLog

_log = structlog.get_logger("lockd.auth.tail")

POLL_INTERVAL = 1.0
# The hub counts as current while its last confirmation of the log's head is younger
# than this many poll intervals.
CURRENT_FOR_POLLS = 3


class LogTailer:
    def __init__(
        self,
        hub: ReplicationHub,
        store: Store,
        log: SharedLog,
        clock: Clock,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._hub = hub
        self._store = store
        self._log = log
        self._clock = clock
        self._poll = poll_interval
        self._confirmed_at: float | None = None
        self._suspect = False  # read back the hub's last event before trusting the log
        self._checking_ahead = False
        self.reloads = 0

    @property
    def current(self) -> bool:
        """The hub matched the log's head within the last few poll intervals."""
        confirmed = self._confirmed_at
        return (
            confirmed is not None
            and self._clock.monotonic() - confirmed < CURRENT_FOR_POLLS * self._poll
        )

    async def run_forever(self) -> None:
        while True:
            try:
                await self.catch_up()
            except UnavailableError as error:
                if not self._suspect:
                    _log.warning("cannot read the shared event log; will retry", error=str(error))
                self._suspect = True
            except Exception:
                # A bug must not stop the tail: this replica would serve a frozen state.
                _log.exception("tailing the shared event log failed; will retry")
                self._suspect = True
            await self._log.wait_for_commit(self._hub.revision, self._poll)

    async def catch_up(self) -> None:
        """Publish every event after the hub's revision; end at the log's head."""
        hub = self._hub
        if self._suspect:
            await self._verify_history()
            self._suspect = False
        while True:
            try:
                events = await self._store.events_since(hub.revision, FETCH_LIMIT)
            except CompactedError:
                await self._reload(ResetReason.TOO_OLD, "the log was compacted past this replica")
                continue
            if events:
                hub.publish(events)
                hub.flush()
                if len(events) == FETCH_LIMIT:
                    continue
            epoch, revision = await self._log.head()
            if epoch != hub.epoch:
                await self._reload(ResetReason.EPOCH_CHANGED, f"the store's epoch is {epoch}")
                continue
            if revision < hub.revision:
                await self._new_history(
                    f"the store is at revision {revision}, this replica served {hub.revision}"
                )
                continue
            if revision > hub.revision:
                continue  # committed since the read
            self._confirmed_at = self._clock.monotonic()
            return

    async def _verify_history(self) -> None:
        last = self._hub.last_event
        if last is None or last.revision < 1:
            return
        try:
            stored = await self._store.events_since(last.revision - 1, 1)
        except CompactedError:
            return  # nothing to compare with; the head check still runs
        if stored and stored[0].revision == last.revision and not _same(stored[0], last):
            await self._new_history(
                f"the store holds another event at revision {last.revision} than was served"
            )

    def check_ahead(self, epoch: str, revision: int) -> None:
        """An agent applied (epoch, revision) beyond the hub: find out whether the store
        lost it (then start a new history) — one check at a time."""
        if self._checking_ahead or epoch != self._hub.epoch:
            return
        self._checking_ahead = True
        task = asyncio.get_running_loop().create_task(self._check_ahead(epoch, revision))
        task.add_done_callback(_log_failure)

    async def _check_ahead(self, epoch: str, revision: int) -> None:
        try:
            stored_epoch, stored_revision = await self._log.head()
            if stored_epoch == epoch == self._hub.epoch and stored_revision < revision:
                await self._new_history(
                    f"an agent applied revision {revision}, the store is at {stored_revision}"
                )
        finally:
            self._checking_ahead = False

    async def _new_history(self, why: str) -> None:
        old = self._hub.epoch
        epoch = await self._log.start_new_epoch(old)
        _log.warning("the store lost served history; starting a new epoch", why=why, epoch=epoch)
        await self._reload(ResetReason.EPOCH_CHANGED, why)

    async def _reload(self, reason: ResetReason, why: str) -> None:
        snapshot = await self._store.snapshot()
        state = ReplicatedState.from_resources(
            snapshot.epoch, snapshot.revision, snapshot.resources
        )
        self.reloads += 1
        _log.warning(
            "reloading the replicated state from the store",
            why=why,
            epoch=snapshot.epoch,
            revision=snapshot.revision,
        )
        self._hub.rebase(state, reason)


def _same(stored: Event, served: Event) -> bool:
    return (stored.type, stored.kind, stored.name, stored.time) == (
        served.type,
        served.kind,
        served.name,
        served.time,
    )


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.warning("could not check an agent's revision against the store", error=str(error))

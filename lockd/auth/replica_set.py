"""The auth replicas of a cluster and the agents on each: reported to, and read from, the store.

Each replica writes its row (id, address, health, revision, agent count) and its agents'
rows (applied revision, state, last ack) to the store every `interval`, so any replica
can answer `lockctl status` for the whole cluster and `lockctl lock --wait` counts the
agents of every replica. The answering replica's own rows come from memory (they are
the freshest); the others' are as fresh as their last report. A replica whose report is
older than `alive_for` reports is shown down, and its agents disconnected: they are
reconnecting elsewhere, and the replica they reach reports them from then on.

A store with one writer has no `ReplicaDirectory`: the one auth server is the only
replica, and its agents are all there is.

Ack requests (`lockctl lock --wait`) go to every replica: a request made through this
one is relayed through the store (`AckRelay`, a NOTIFY in PostgreSQL) and each replica
asks its own agents; a replica whose agent acked the awaited revision reports at once
(at most every `SOON_GAP` seconds), so the waiting replica sees it without waiting for
the next periodic report.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import structlog

from lockd.auth.agents import AgentRegistry
from lockd.auth.hub import ReplicationHub
from lockd.domain.errors import UnavailableError
from lockd.domain.ports import Clock
from lockd.domain.replicas import AgentPresence, ReplicaDirectory, ReplicaRecord

_log = structlog.get_logger("lockd.auth.replicas")

REPORT_INTERVAL = 1.0
ALIVE_FOR_REPORTS = 5
# The shortest pause between reports sent early (acks of an awaited revision).
SOON_GAP = 0.1
# A held status (lock --wait) looks again this often even without an ack here, and
# gathers the acks arriving together for this long after one.
HOLD_RECHECK = 0.1
HOLD_GATHER = 0.01


@runtime_checkable
class AckRelay(Protocol):
    """Ack requests to and from the other replicas sharing the store."""

    async def request_acks(self, epoch: str, revision: int) -> None:
        """Tell every replica (this one too) that `revision` of `epoch` is awaited."""
        ...

    def on_ack_request(self, handler: Callable[[str, int], None]) -> None:
        """Call `handler(epoch, revision)` for every request any replica announced."""
        ...


@dataclass(frozen=True, slots=True)
class ReplicaView:
    record: ReplicaRecord
    alive: bool  # reported within the last few intervals (always true for the local one)
    local: bool  # the replica answering


@dataclass(frozen=True, slots=True)
class ClusterMembers:
    replicas: list[ReplicaView]
    agents: list[AgentPresence]  # by agent id


class ReplicaSet:
    def __init__(
        self,
        directory: ReplicaDirectory | None,
        hub: ReplicationHub,
        agents: AgentRegistry,
        clock: Clock,
        healthy: Callable[[], bool],
        interval: float = REPORT_INTERVAL,
        relay: AckRelay | None = None,
    ) -> None:
        self._directory = directory
        # Named once the listeners are bound (`identify`).
        self.replica_id = ""
        self.address = ""
        self._hub = hub
        self._agents = agents
        self._clock = clock
        self._healthy = healthy
        self._interval = interval
        self._relay = relay
        self._report_now = asyncio.Event()
        self._relay_wanted = asyncio.Event()
        self._relay_revision = 0  # the highest request not relayed yet
        # The other replicas' agent rows, under the report (heartbeat_at) they came with:
        # re-read only after that replica reported again (lockctl lock --wait polls).
        self._remote: dict[str, tuple[datetime, list[AgentPresence]]] = {}
        # This replica's agents as its last report stored them (None: report them all).
        self._reported: dict[str, AgentPresence] | None = None
        agents.on_awaited_ack.append(self._report_now.set)
        # Set, and replaced, at each ack of the awaited revision (held lock --wait statuses).
        self._acked = asyncio.Event()
        agents.on_awaited_ack.append(self._ack_arrived)
        if relay is not None:
            agents.on_request.append(self._relay_soon)
            relay.on_ack_request(self._requested_elsewhere)

    def identify(self, replica_id: str, address: str) -> None:
        self.replica_id, self.address = replica_id, address

    def local_record(self) -> ReplicaRecord:
        return ReplicaRecord(
            replica_id=self.replica_id,
            address=self.address,
            healthy=self._healthy(),
            revision=self._hub.revision,
            epoch=self._hub.epoch,
            agents=len(self._agents.connected()),
            heartbeat_at=self._clock.now(),
        )

    def local_agents(self) -> list[AgentPresence]:
        return [
            AgentPresence(
                agent_id=record.agent_id,
                replica_id=self.replica_id,
                address=record.address,
                connected=record.connected,
                state=self._agents.observed_state(record, self._clock.now()),
                epoch=record.epoch,
                applied_revision=record.applied_revision,
                last_ack=record.last_ack,
                last_frame=record.last_frame,
            )
            for record in self._agents.unordered()
        ]

    async def report_forever(self) -> None:
        if self._directory is None:
            return
        while True:
            self._report_now.clear()
            await self.report()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._report_now.wait()
                    await asyncio.sleep(SOON_GAP)  # let the acks arriving together in

    def _relay_soon(self, revision: int) -> None:
        self._relay_revision = max(self._relay_revision, revision)
        self._relay_wanted.set()

    def _requested_elsewhere(self, epoch: str, revision: int) -> None:
        if epoch == self._hub.epoch:
            self._agents.request_ack(revision, relayed=True)

    async def relay_forever(self) -> None:
        """Relay this replica's ack requests to the others, one at a time (the latest)."""
        if self._relay is None:
            return
        while True:
            await self._relay_wanted.wait()
            self._relay_wanted.clear()
            revision, self._relay_revision = self._relay_revision, 0
            try:
                await self._relay.request_acks(self._hub.epoch, revision)
            except UnavailableError as error:
                _log.debug("could not relay an ack request", error=str(error))

    async def report(self) -> None:
        """Report this replica and its agents: all of them the first time (and after a
        failed report), then only those whose stored row would change."""
        if self._directory is None:
            return
        presences = {agent.agent_id: _stored(agent) for agent in self.local_agents()}
        reported, self._reported = self._reported, None  # None until this report is in
        if reported is None:
            changed = list(presences.values())
        else:
            changed = [row for key, row in presences.items() if reported.get(key) != row]
        try:
            await self._directory.report_replica(
                self.local_record(), changed, complete=reported is None
            )
        except UnavailableError as error:
            _log.debug("could not report this replica", error=str(error))
            return
        self._reported = presences

    async def leave(self) -> None:
        """Remove this replica's rows (a clean stop)."""
        if self._directory is None:
            return
        try:
            await self._directory.forget_replica(self.replica_id)
        except UnavailableError as error:
            _log.warning("could not remove this replica from the store", error=str(error))

    async def members(self) -> ClusterMembers:
        """Every replica and every agent; this replica's from memory.

        UnavailableError when the store cannot list the other replicas.
        """
        local = ReplicaView(self.local_record(), alive=True, local=True)
        mine = {agent.agent_id: agent for agent in self.local_agents()}
        if self._directory is None:
            return ClusterMembers([local], sorted(mine.values(), key=_agent_key))
        records, alive = await self._others()
        views = [local]
        views.extend(
            ReplicaView(record, alive=record.replica_id in alive, local=False)
            for record in records
            if record.replica_id != self.replica_id
        )
        agents = dict(mine)
        for presence in self._remote_presences():
            if presence.replica_id not in alive:
                presence = replace(presence, connected=False)
            held = agents.get(presence.agent_id)
            if held is None or (presence.connected and not held.connected):
                agents[presence.agent_id] = presence
        views.sort(key=lambda view: view.record.replica_id)
        return ClusterMembers(views, sorted(agents.values(), key=_agent_key))

    async def awaited_applied(self, epoch: str, revision: int) -> bool:
        """Every agent `members` would show connected has acknowledged `revision` of
        `epoch` — decided without building the members (a held `lock --wait` status asks
        again and again while the acks come in).

        UnavailableError when the store cannot list the other replicas.
        """
        here: set[str] = set()
        for record in self._agents.unordered():
            if record.connected:
                if record.epoch != epoch or record.applied_revision < revision:
                    return False
                here.add(record.agent_id)
        if self._directory is None:
            return True
        _, alive = await self._others()
        chosen: set[str] = set()  # as in `members`: the first connected row elsewhere wins
        for presence in self._remote_presences():
            agent_id = presence.agent_id
            if presence.connected and presence.replica_id in alive and agent_id not in here:
                if agent_id in chosen:
                    continue
                if presence.epoch != epoch or presence.applied_revision < revision:
                    return False
                chosen.add(agent_id)
        return True

    async def hold_until_applied(self, epoch: str, revision: int, seconds: float) -> bool:
        """Wait until `awaited_applied`, for `seconds` at most; whether it came to that.

        Looked at again after every ack of the awaited revision here (gathered for
        `HOLD_GATHER`), and every `HOLD_RECHECK` (a disconnect, another replica's report).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            acked = self._acked  # taken before looking: an ack while it looks ends the wait
            if await self.awaited_applied(epoch, revision):
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, HOLD_RECHECK)):
                    await acked.wait()
                    await asyncio.sleep(HOLD_GATHER)  # the acks arriving together

    def _ack_arrived(self) -> None:
        acked, self._acked = self._acked, asyncio.Event()
        acked.set()

    async def _others(self) -> tuple[list[ReplicaRecord], set[str]]:
        """The store's replica rows, after re-reading the agents of those that reported
        again (`_remote`), and the ids of the replicas alive, this one included."""
        assert self._directory is not None
        known = {replica_id: at for replica_id, (at, _) in self._remote.items()}
        records, fresh = await self._directory.list_replicas(self.replica_id, known)
        listed = {record.replica_id: record.heartbeat_at for record in records}
        for replica_id, rows in fresh.items():
            self._remote[replica_id] = (listed[replica_id], rows)
        for replica_id in set(self._remote) - set(listed):
            del self._remote[replica_id]  # forgotten: a clean stop
        alive_after = self._clock.now() - timedelta(seconds=ALIVE_FOR_REPORTS * self._interval)
        alive = {self.replica_id}
        alive.update(record.replica_id for record in records if record.heartbeat_at >= alive_after)
        return records, alive

    def _remote_presences(self) -> Iterator[AgentPresence]:
        """The other replicas' agent rows (ours come from memory)."""
        for _, rows in self._remote.values():
            for presence in rows:
                if presence.replica_id != self.replica_id:
                    yield presence


def _stored(agent: AgentPresence) -> AgentPresence:
    """The agent as the directory stores it (no last_frame): what a report compares."""
    return replace(agent, last_frame=None)


def _agent_key(agent: AgentPresence) -> str:
    return agent.agent_id

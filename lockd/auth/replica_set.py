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
from collections.abc import Callable
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
            for record in self._agents.records()
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
        known = {replica_id: at for replica_id, (at, _) in self._remote.items()}
        records, fresh = await self._directory.list_replicas(self.replica_id, known)
        listed = {record.replica_id: record.heartbeat_at for record in records}
        for replica_id, rows in fresh.items():
            self._remote[replica_id] = (listed[replica_id], rows)
        for replica_id in set(self._remote) - set(listed):
            del self._remote[replica_id]  # forgotten: a clean stop
        presences = [row for _, rows in self._remote.values() for row in rows]
        alive_after = self._clock.now() - timedelta(seconds=ALIVE_FOR_REPORTS * self._interval)
        views = [local]
        alive: set[str] = {self.replica_id}
        for record in records:
            if record.replica_id == self.replica_id:
                continue
            up = record.heartbeat_at >= alive_after
            if up:
                alive.add(record.replica_id)
            views.append(ReplicaView(record, alive=up, local=False))
        agents = dict(mine)
        for presence in presences:
            if presence.replica_id == self.replica_id:
                continue  # ours come from memory
            if presence.replica_id not in alive:
                presence = replace(presence, connected=False)
            held = agents.get(presence.agent_id)
            if held is None or (presence.connected and not held.connected):
                agents[presence.agent_id] = presence
        views.sort(key=lambda view: view.record.replica_id)
        return ClusterMembers(views, sorted(agents.values(), key=_agent_key))


def _stored(agent: AgentPresence) -> AgentPresence:
    """The agent as the directory stores it (no last_frame): what a report compares."""
    return replace(agent, last_frame=None)


def _agent_key(agent: AgentPresence) -> str:
    return agent.agent_id

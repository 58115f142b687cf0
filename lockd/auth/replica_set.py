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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog

from lockd.auth.agents import AgentRegistry
from lockd.auth.hub import ReplicationHub
from lockd.domain.errors import UnavailableError
from lockd.domain.ports import Clock
from lockd.domain.replicas import AgentPresence, ReplicaDirectory, ReplicaRecord

_log = structlog.get_logger("lockd.auth.replicas")

REPORT_INTERVAL = 1.0
ALIVE_FOR_REPORTS = 5


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
            await self.report()
            await asyncio.sleep(self._interval)

    async def report(self) -> None:
        if self._directory is None:
            return
        try:
            await self._directory.report_replica(self.local_record(), self.local_agents())
        except UnavailableError as error:
            _log.debug("could not report this replica", error=str(error))

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
        records, presences = await self._directory.list_replicas()
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


def _agent_key(agent: AgentPresence) -> str:
    return agent.agent_id

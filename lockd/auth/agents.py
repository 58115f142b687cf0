"""What the auth server knows of each agent: its stream, applied revision and last ack.

`lockctl status` and `lockctl lock --wait` read this registry, and the metrics export
the lag. An agent reconnecting opens a new stream before the old one is noticed as
closed; a stream token keeps the newer stream's record from being dropped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class AgentRecord:
    agent_id: str
    address: str
    connected: bool
    stream_token: int
    connected_at: datetime
    state: str = "syncing"
    epoch: str = ""
    applied_revision: int = 0
    last_ack: datetime | None = None


class AgentRegistry:
    def __init__(self) -> None:
        self._records: dict[str, AgentRecord] = {}
        self._tokens = itertools.count(1)

    def connect(self, agent_id: str, address: str, now: datetime) -> int:
        """Record a new stream for the agent and return its token."""
        token = next(self._tokens)
        previous = self._records.get(agent_id)
        record = AgentRecord(agent_id, address, True, token, now)
        if previous is not None:
            record.epoch = previous.epoch
            record.applied_revision = previous.applied_revision
            record.last_ack = previous.last_ack
        self._records[agent_id] = record
        return token

    def ack(
        self, agent_id: str, token: int, epoch: str, revision: int, state: str, now: datetime
    ) -> None:
        record = self._records.get(agent_id)
        if record is None or record.stream_token != token:
            return
        record.epoch, record.applied_revision, record.state = epoch, revision, state
        record.last_ack = now

    def disconnect(self, agent_id: str, token: int) -> None:
        record = self._records.get(agent_id)
        if record is not None and record.stream_token == token:
            record.connected = False

    def forget(self, agent_id: str) -> None:
        self._records.pop(agent_id, None)

    def records(self) -> list[AgentRecord]:
        return sorted(self._records.values(), key=lambda record: record.agent_id)

    def connected(self) -> list[AgentRecord]:
        return [record for record in self.records() if record.connected]

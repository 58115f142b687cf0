"""What the auth server knows of each agent: its stream, what it acknowledged, when it
was last heard from, and which revision somebody waits for.

`lockctl status` and `lockctl lock --wait` read this registry, and the metrics export
the lag. An agent reconnecting opens a new stream before the old one is noticed as
closed; a stream token keeps the newer stream's record from being dropped.

The state shown is what the server observes: the agent's own report (its last ack),
unless the agent is connected but nothing arrived from it for `silent_after` (three
heartbeat intervals: a healthy agent acks at heartbeat cadence) — then `unresponsive`;
or unless its stream was ended by a lock on its server_id — then `locked`.

Acks on demand: `request_ack(revision)` marks a revision somebody waits for; every
stream that has delivered it asks its agent to acknowledge it at once
(lockd.auth.watch_stream), instead of at the next heartbeat-cadence ack. With several
replicas the request is relayed (`on_request`) to the others, whose agents ack at once
too (`relayed=True`: not relayed again); an ack that reaches the awaited revision calls
`on_awaited_ack`, so the replica reports its agents without waiting for its next report.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

UNRESPONSIVE = "unresponsive"
LOCKED = "locked"


@dataclass(slots=True)
class AgentRecord:
    agent_id: str
    address: str
    connected: bool
    stream_token: int
    connected_at: datetime
    state: str = "syncing"  # as the agent last reported it
    epoch: str = ""
    applied_revision: int = 0
    last_ack: datetime | None = None
    # The last message received on the stream (the Hello, then every ack).
    last_frame: datetime | None = None
    # The stream was ended by a lock on this agent's server_id.
    locked: bool = False


@dataclass
class AgentRegistry:
    # Nothing received for this long from a connected agent: it is unresponsive.
    silent_after: timedelta = timedelta(seconds=15)
    _records: dict[str, AgentRecord] = field(default_factory=dict)
    _tokens: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # The highest revision somebody waits for (0: none), in the server's current history.
    awaited: int = 0
    # Called when `awaited` grows (the runtime wakes the watch streams).
    on_await: list[Callable[[], None]] = field(default_factory=list)
    # Called with the revision of every request made through this replica.
    on_request: list[Callable[[int], None]] = field(default_factory=list)
    # Called when an agent acks the awaited revision for the first time.
    on_awaited_ack: list[Callable[[], None]] = field(default_factory=list)

    def connect(self, agent_id: str, address: str, now: datetime) -> int:
        """Record a new stream for the agent and return its token."""
        token = next(self._tokens)
        previous = self._records.get(agent_id)
        record = AgentRecord(agent_id, address, True, token, now, last_frame=now)
        if previous is not None:
            record.epoch = previous.epoch
            record.applied_revision = previous.applied_revision
            record.last_ack = previous.last_ack
        self._records[agent_id] = record
        return token

    def heard(self, agent_id: str, token: int, now: datetime) -> None:
        """A message other than an ack arrived on the stream."""
        record = self._records.get(agent_id)
        if record is not None and record.stream_token == token:
            record.last_frame = now

    def ack(
        self, agent_id: str, token: int, epoch: str, revision: int, state: str, now: datetime
    ) -> None:
        record = self._records.get(agent_id)
        if record is None or record.stream_token != token:
            return
        reached = record.applied_revision < self.awaited <= revision
        record.epoch, record.applied_revision, record.state = epoch, revision, state
        record.last_ack = record.last_frame = now
        if reached:
            for listener in self.on_awaited_ack:
                listener()

    def disconnect(self, agent_id: str, token: int) -> None:
        record = self._records.get(agent_id)
        if record is not None and record.stream_token == token:
            record.connected = False

    def lock_out(self, agent_id: str, token: int) -> None:
        """The stream ended because a lock hit the agent (it is refused from now on)."""
        record = self._records.get(agent_id)
        if record is not None and record.stream_token == token:
            record.connected = False
            record.locked = True

    def observed_state(self, record: AgentRecord, now: datetime) -> str:
        if record.locked:
            return LOCKED
        silent = record.last_frame is None or now - record.last_frame > self.silent_after
        if record.connected and silent:
            return UNRESPONSIVE
        return record.state

    def request_ack(self, revision: int, *, relayed: bool = False) -> None:
        """Somebody waits for `revision`: have the agents acknowledge it at once.

        `relayed`: the request came from another replica (it is not relayed again). A
        request through this replica is relayed every time, not only when it is new: a
        relay may be lost, and the waiting client repeats its request."""
        if revision > self.awaited:
            self.awaited = revision
            for listener in self.on_await:
                listener()
        if not relayed:
            for relay in self.on_request:
                relay(revision)

    def unordered(self) -> Iterator[AgentRecord]:
        """Every record, in no particular order (a status sorts what it shows; a held
        `lock --wait` status scans them again and again while the acks come in)."""
        return iter(self._records.values())

    def connected(self) -> list[AgentRecord]:
        """The connected agents' records, in no particular order (counted, not shown)."""
        return [record for record in self.unordered() if record.connected]

"""What several auth replicas on one shared store need from it, beside the Store port.

A store shared by replicas (PostgreSQL) implements these Protocols; the embedded stores
(memory, SQLite) have exactly one writer and do not — the runtime gives their auth
server local stand-ins. Declarations only: nothing here does IO.

- `SharedLog`: a wake-up when the log may have grown (the log stays the truth), the
  log's head, and starting a new history when what was served is no longer in the store.
- `Leases`: one holder at a time for a named job (the expiry reaper and compaction),
  timed by the store's clock so replicas' clocks do not matter.
- `ReplicaDirectory`: each replica's row (id, address, health, revision, agents) and
  the agents connected to it, so any replica can show all of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """One auth replica as it last reported itself (`heartbeat_at` set by the store)."""

    replica_id: str
    address: str
    healthy: bool
    revision: int
    epoch: str
    agents: int
    heartbeat_at: datetime


@dataclass(frozen=True, slots=True)
class AgentPresence:
    """One agent as the replica it is (or was last) connected to knows it."""

    agent_id: str
    replica_id: str
    address: str
    connected: bool
    state: str
    epoch: str
    applied_revision: int
    last_ack: datetime | None
    # The last message the replica received from the agent (lockd.auth.agents).
    last_frame: datetime | None = None


@runtime_checkable
class SharedLog(Protocol):
    async def wait_for_commit(self, after_revision: int, at_most: float) -> None:
        """Return once the log may hold events after `after_revision` (a commit was
        announced, or the announcements' listener reconnected and may have missed
        some), or after `at_most` seconds. Never raises for IO failures."""
        ...

    async def head(self) -> tuple[str, int]:
        """The stored (epoch, revision)."""
        ...

    async def start_new_epoch(self, expected_epoch: str) -> str:
        """If the stored epoch is `expected_epoch`, replace it with a new random one
        (revision and resources unchanged); return the epoch stored after the call."""
        ...


@runtime_checkable
class Leases(Protocol):
    async def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew lease `name` for `holder` (free, expired or already held by
        `holder`); whether `holder` holds it after the call."""
        ...

    async def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up if `holder` holds it."""
        ...


@runtime_checkable
class ReplicaDirectory(Protocol):
    async def report_replica(
        self, replica: ReplicaRecord, agents: Sequence[AgentPresence], complete: bool = True
    ) -> None:
        """Upsert the replica's row (heartbeat_at = the store's now) and `agents`, in one
        transaction. `complete`: `agents` is the replica's full list, and its rows for
        other agents go; otherwise only the agents that changed since its last report.
        An agent is on one replica at a time: a report from another replica takes its
        row over, unless that report has the agent disconnected and the row has it
        connected (the replica it left must not take it back)."""
        ...

    async def list_replicas(
        self, exclude: str = "", known: Mapping[str, datetime] | None = None
    ) -> tuple[list[ReplicaRecord], dict[str, list[AgentPresence]]]:
        """Every replica row, and the agent rows of each replica but `exclude` whose
        `heartbeat_at` is not the one `known` gives for it, by replica id (a replica
        with no agents: an empty list), read together. A replica's agent rows change
        only in its reports, which set its `heartbeat_at`: a caller that keeps the rows
        it read under that time re-reads a replica only after it reported again."""
        ...

    async def forget_replica(self, replica_id: str) -> None:
        """Remove the replica's row and its agents' rows (a clean stop)."""
        ...

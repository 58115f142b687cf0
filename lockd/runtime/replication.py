"""Wiring an auth server into a cluster of replicas — or into being the only one.

A store shared by replicas (one that implements `SharedLog`, `Leases` and
`ReplicaDirectory`, i.e. PostgreSQL) gets a `LogTailer` (every replica's commits reach
this hub in order), a lease for the reaper and compaction, a row in the replica
directory, and its ack requests relayed to the other replicas (`AckRelay`). A store with
one writer (memory, SQLite) gets none of that: its auth server publishes its own
commits, always leads and is the only replica.
"""

from __future__ import annotations

import socket
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from lockd.auth.agents import AgentRegistry
from lockd.auth.hub import ReplicationHub
from lockd.auth.leadership import Leadership
from lockd.auth.log_tailer import LogTailer
from lockd.auth.replica_set import AckRelay, ReplicaSet
from lockd.domain.addresses import join_host_port, split_host_port
from lockd.domain.ports import Clock, Store
from lockd.domain.replicas import Leases, ReplicaDirectory, SharedLog


@dataclass(slots=True)
class Replication:
    tailer: LogTailer | None
    leadership: Leadership
    replicas: ReplicaSet

    @classmethod
    def build(
        cls,
        store: Store,
        reads: Store,
        hub: ReplicationHub,
        agents: AgentRegistry,
        clock: Clock,
    ) -> Replication:
        """`store` is the adapter itself (its capabilities are looked up on it); `reads`
        the store the tail reads the log through (the timed wrapper)."""
        tailer = LogTailer(hub, reads, store, clock) if isinstance(store, SharedLog) else None
        leases = store if isinstance(store, Leases) else None
        directory = store if isinstance(store, ReplicaDirectory) else None

        def healthy() -> bool:
            return reads.healthy and (tailer is None or tailer.current)

        hub.health = healthy
        if tailer is not None:
            hub.on_ahead.append(tailer.check_ahead)
        relay = store if isinstance(store, AckRelay) else None
        replicas = ReplicaSet(directory, hub, agents, clock, healthy, relay=relay)
        # The holder is named at `identify`, once the port is known.
        return cls(tailer, Leadership(leases, "", clock), replicas)

    def identify(self, listen_addr: str, port: int, replica_id: str = "") -> None:
        """Name this replica: `replica_id`, or `<hostname>:<port>` by default."""
        host, _ = split_host_port(listen_addr)
        address = join_host_port(host, port)
        name = replica_id or f"{socket.gethostname()}:{port}"
        self.replicas.identify(name, address)
        self.leadership.holder = name

    async def prepare(self) -> None:
        """Before the first write and the first stream: reach the log's head."""
        if self.tailer is not None:
            await self.tailer.catch_up()

    async def join(self) -> None:
        """Once named: learn whether this replica leads, and report it."""
        await self.leadership.renew()
        await self.replicas.report()

    def loops(self) -> list[Coroutine[Any, Any, None]]:
        loops = [
            self.leadership.run_forever(),
            self.replicas.report_forever(),
            self.replicas.relay_forever(),
        ]
        if self.tailer is not None:
            loops.append(self.tailer.run_forever())
        return loops

    async def leave(self) -> None:
        """A clean stop: hand the lease on and leave the replica directory."""
        await self.leadership.release()
        await self.replicas.leave()

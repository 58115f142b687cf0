"""What replicas share beside the log, in PostgreSQL: leases and the replica directory.

Leases are rows timed by the database's clock (`now()`), so the replicas' own clocks do
not matter: a holder renews before `expires`; when it dies, the row simply runs out and
the next replica that asks takes it over. The directory is one row per replica plus one
per agent, written by each replica's periodic report (`lockd.domain.replicas`).

Ack requests (`lockctl lock --wait` through one replica) reach the other replicas as a
NOTIFY on `ACK_REQUEST_CHANNEL` with the payload `epoch:revision`; each replica's commit
listener hands them to its agents' streams. Not durable, and it need not be: the waiting
client repeats its request with every status call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from lockd.domain.replicas import AgentPresence, ReplicaRecord
from lockd.store.postgres_ops import Conn

ACK_REQUEST_CHANNEL = "lockd_ack_request"


async def acquire_lease(conn: Conn, name: str, holder: str, ttl: timedelta) -> bool:
    """Take the lease when free or expired, renew it when `holder` has it; one statement,
    so two replicas racing for a free lease cannot both win (the primary key decides)."""
    got = await conn.fetchval(
        "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, now() + $3) "
        "ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires "
        "WHERE leases.holder = EXCLUDED.holder OR leases.expires <= now() "
        "RETURNING 1",
        name,
        holder,
        ttl,
    )
    return got is not None


async def release_lease(conn: Conn, name: str, holder: str) -> None:
    await conn.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder)


async def report_replica(
    conn: Conn, replica: ReplicaRecord, agents: Sequence[AgentPresence], complete: bool
) -> None:
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO replicas (replica_id, address, healthy, revision, epoch, agents, "
            "heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (replica_id) "
            "DO UPDATE SET address = EXCLUDED.address, healthy = EXCLUDED.healthy, "
            "revision = EXCLUDED.revision, epoch = EXCLUDED.epoch, agents = EXCLUDED.agents, "
            "heartbeat_at = EXCLUDED.heartbeat_at",
            replica.replica_id,
            replica.address,
            replica.healthy,
            replica.revision,
            replica.epoch,
            replica.agents,
        )
        if complete:
            await conn.execute(
                "DELETE FROM replica_agents "
                "WHERE replica_id = $1 AND NOT agent_id = ANY($2::text[])",
                replica.replica_id,
                [agent.agent_id for agent in agents],
            )
        await conn.executemany(
            "INSERT INTO replica_agents (agent_id, replica_id, address, connected, state, "
            "epoch, applied_revision, last_ack) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (agent_id) DO UPDATE SET replica_id = EXCLUDED.replica_id, "
            "address = EXCLUDED.address, connected = EXCLUDED.connected, "
            "state = EXCLUDED.state, epoch = EXCLUDED.epoch, "
            "applied_revision = EXCLUDED.applied_revision, last_ack = EXCLUDED.last_ack "
            # A replica the agent left does not take its row back from the one it is on.
            "WHERE replica_agents.replica_id = EXCLUDED.replica_id OR EXCLUDED.connected "
            "OR NOT replica_agents.connected",
            [
                (
                    agent.agent_id,
                    replica.replica_id,
                    agent.address,
                    agent.connected,
                    agent.state,
                    agent.epoch,
                    agent.applied_revision,
                    agent.last_ack,
                )
                for agent in agents
            ],
        )


async def list_replicas(
    conn: Conn, exclude: str, known: Mapping[str, datetime]
) -> tuple[list[ReplicaRecord], dict[str, list[AgentPresence]]]:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            "SELECT replica_id, address, healthy, revision, epoch, agents, heartbeat_at "
            "FROM replicas ORDER BY replica_id"
        )
        replicas = [ReplicaRecord(*row.values()) for row in rows]
        wanted = [
            r.replica_id
            for r in replicas
            if r.replica_id != exclude and known.get(r.replica_id) != r.heartbeat_at
        ]
        agents: dict[str, list[AgentPresence]] = {replica_id: [] for replica_id in wanted}
        if wanted:
            for row in await conn.fetch(
                "SELECT agent_id, replica_id, address, connected, state, epoch, "
                "applied_revision, last_ack FROM replica_agents "
                "WHERE replica_id = ANY($1::text[]) ORDER BY agent_id",
                wanted,
            ):
                presence = AgentPresence(*row.values())
                agents[presence.replica_id].append(presence)
    return replicas, agents


async def forget_replica(conn: Conn, replica_id: str) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM replica_agents WHERE replica_id = $1", replica_id)
        await conn.execute("DELETE FROM replicas WHERE replica_id = $1", replica_id)


async def request_acks(conn: Conn, epoch: str, revision: int) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", ACK_REQUEST_CHANNEL, f"{epoch}:{revision}")


def parse_ack_request(payload: str) -> tuple[str, int]:
    """(epoch, revision) of an ack request's payload; ValueError when malformed."""
    epoch, colon, revision = payload.rpartition(":")
    if not colon or not epoch:
        raise ValueError(f"not epoch:revision: {payload[:40]!r}")
    return epoch, int(revision)

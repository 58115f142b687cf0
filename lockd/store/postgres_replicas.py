"""What replicas share beside the log, in PostgreSQL: leases and the replica directory.

Leases are rows timed by the database's clock (`now()`), so the replicas' own clocks do
not matter: a holder renews before `expires`; when it dies, the row simply runs out and
the next replica that asks takes it over. The directory is one row per replica plus one
per agent, written by each replica's periodic report (`lockd.domain.replicas`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from lockd.domain.replicas import AgentPresence, ReplicaRecord
from lockd.store.postgres_ops import Conn


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
    conn: Conn, replica: ReplicaRecord, agents: Sequence[AgentPresence]
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
        await conn.execute(
            "DELETE FROM replica_agents WHERE replica_id = $1 AND NOT agent_id = ANY($2::text[])",
            replica.replica_id,
            [agent.agent_id for agent in agents],
        )
        await conn.executemany(
            "INSERT INTO replica_agents (agent_id, replica_id, address, connected, state, "
            "epoch, applied_revision, last_ack) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            "ON CONFLICT (agent_id) DO UPDATE SET replica_id = EXCLUDED.replica_id, "
            "address = EXCLUDED.address, connected = EXCLUDED.connected, "
            "state = EXCLUDED.state, epoch = EXCLUDED.epoch, "
            "applied_revision = EXCLUDED.applied_revision, last_ack = EXCLUDED.last_ack",
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
    conn: Conn,
) -> tuple[list[ReplicaRecord], list[AgentPresence]]:
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        replicas = await conn.fetch(
            "SELECT replica_id, address, healthy, revision, epoch, agents, heartbeat_at "
            "FROM replicas ORDER BY replica_id"
        )
        agents = await conn.fetch(
            "SELECT agent_id, replica_id, address, connected, state, epoch, "
            "applied_revision, last_ack FROM replica_agents ORDER BY agent_id"
        )
    return (
        [ReplicaRecord(*row.values()) for row in replicas],
        [AgentPresence(*row.values()) for row in agents],
    )


async def forget_replica(conn: Conn, replica_id: str) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM replica_agents WHERE replica_id = $1", replica_id)
        await conn.execute("DELETE FROM replicas WHERE replica_id = $1", replica_id)

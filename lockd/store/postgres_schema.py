"""The PostgreSQL schema behind `PostgresStore`, versioned and upgraded on open.

The version lives in the one-row table `lockd_schema`. Every replica runs `migrate` when
it opens the store; the whole migration is one transaction under a transaction-scoped
advisory lock, so when two replicas start at the same moment one migrates and the other
waits, then finds the schema current. DDL is transactional in PostgreSQL: a failed
upgrade leaves the old version whole, to be retried on the next open. A fresh database
runs every migration in order, exactly as an old one is upgraded, so the two can never
differ.

Names are compared and ordered byte-wise (COLLATE "C") whatever the database's locale,
so snapshots list resources in the same order as the other stores.
"""

from __future__ import annotations

import uuid

from lockd.store import rules
from lockd.store.postgres_ops import Conn

SCHEMA_VERSION = 1

# pg_advisory_xact_lock key for migrations: "lockd" in ASCII, unlikely to meet another
# application's key in the same database.
MIGRATION_LOCK_KEY = 0x6C6F636B64

# MIGRATIONS[v]: the statements that take a version v - 1 database to version v.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # One row: the history's epoch and its last committed revision. Every write
        # takes this row's lock first, which serialises writers across replicas and
        # makes revisions gapless and in commit order (a sequence would be neither).
        """CREATE TABLE meta (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            epoch TEXT NOT NULL,
            revision BIGINT NOT NULL
        )""",
        # Replicated resources; bodies are the JSON documents of lockd.store.codec.
        # `expires` (µs since the Unix epoch) is set for expiring locks only.
        """CREATE TABLE resources (
            kind TEXT NOT NULL,
            name TEXT COLLATE "C" NOT NULL,
            body TEXT NOT NULL,
            expires BIGINT,
            PRIMARY KEY (kind, name)
        )""",
        "CREATE INDEX resources_expires ON resources (expires, name) WHERE expires IS NOT NULL",
        # The event log; `time` is µs since the Unix epoch; body is NULL for DELETE/EXPIRE.
        """CREATE TABLE events (
            revision BIGINT PRIMARY KEY,
            type TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            body TEXT,
            time BIGINT NOT NULL
        )""",
        'CREATE TABLE users (name TEXT COLLATE "C" PRIMARY KEY, body TEXT NOT NULL)',
        # One-time join tokens by the SHA-256 of the secret; not replicated.
        """CREATE TABLE tokens (
            digest TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            expires BIGINT NOT NULL,
            created_by TEXT NOT NULL
        )""",
        # Leases for jobs one replica at a time runs; timed by the database's clock.
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            expires TIMESTAMPTZ NOT NULL
        )""",
        # The replica directory: each replica's last report, and the agents on it.
        """CREATE TABLE replicas (
            replica_id TEXT COLLATE "C" PRIMARY KEY,
            address TEXT NOT NULL,
            healthy BOOLEAN NOT NULL,
            revision BIGINT NOT NULL,
            epoch TEXT NOT NULL,
            agents INTEGER NOT NULL,
            heartbeat_at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE replica_agents (
            agent_id TEXT COLLATE "C" PRIMARY KEY,
            replica_id TEXT NOT NULL,
            address TEXT NOT NULL,
            connected BOOLEAN NOT NULL,
            state TEXT NOT NULL,
            epoch TEXT NOT NULL,
            applied_revision BIGINT NOT NULL,
            last_ack TIMESTAMPTZ
        )""",
        "CREATE INDEX replica_agents_replica ON replica_agents (replica_id)",
        # A put or a delete is one statement, so one round trip (autocommit: no BEGIN
        # and COMMIT of its own): under load every round trip is a wait for the
        # scheduler. Both take the counter row's lock first, so each check below reads
        # what the previous writer committed (plpgsql takes a new snapshot per query at
        # READ COMMITTED); a refused write changes nothing and returns a NULL revision.
        """CREATE FUNCTION lockd_put(
            p_kind TEXT, p_name TEXT, p_body TEXT, p_expires BIGINT, p_mode TEXT,
            p_type TEXT, p_time BIGINT, p_channel TEXT
        ) RETURNS TABLE (new_revision BIGINT, existed BOOLEAN)
        LANGUAGE plpgsql AS $$
        DECLARE
            v_revision BIGINT;
            v_existed BOOLEAN;
        BEGIN
            PERFORM 1 FROM meta WHERE id = 1 FOR UPDATE;
            v_existed := EXISTS (
                SELECT 1 FROM resources r WHERE r.kind = p_kind AND r.name = p_name
            );
            IF (p_mode = 'create' AND v_existed) OR (p_mode = 'update' AND NOT v_existed) THEN
                RETURN QUERY SELECT NULL::BIGINT, v_existed;
                RETURN;
            END IF;
            INSERT INTO resources AS r (kind, name, body, expires)
                VALUES (p_kind, p_name, p_body, p_expires)
                ON CONFLICT (kind, name)
                DO UPDATE SET body = EXCLUDED.body, expires = EXCLUDED.expires;
            UPDATE meta m SET revision = m.revision + 1 WHERE m.id = 1
                RETURNING m.revision INTO v_revision;
            INSERT INTO events (revision, type, kind, name, body, time)
                VALUES (v_revision, p_type, p_kind, p_name, p_body, p_time);
            PERFORM pg_notify(p_channel, v_revision::TEXT);
            RETURN QUERY SELECT v_revision, v_existed;
        END
        $$""",
        """CREATE FUNCTION lockd_delete(
            p_kind TEXT, p_name TEXT, p_type TEXT, p_time BIGINT, p_channel TEXT
        ) RETURNS BIGINT
        LANGUAGE plpgsql AS $$
        DECLARE
            v_revision BIGINT;
        BEGIN
            PERFORM 1 FROM meta WHERE id = 1 FOR UPDATE;
            DELETE FROM resources r WHERE r.kind = p_kind AND r.name = p_name;
            IF NOT FOUND THEN
                RETURN NULL;
            END IF;
            UPDATE meta m SET revision = m.revision + 1 WHERE m.id = 1
                RETURNING m.revision INTO v_revision;
            INSERT INTO events (revision, type, kind, name, body, time)
                VALUES (v_revision, p_type, p_kind, p_name, NULL, p_time);
            PERFORM pg_notify(p_channel, v_revision::TEXT);
            RETURN v_revision;
        END
        $$""",
    ),
}


async def migrate(conn: Conn) -> None:
    """Create or upgrade the schema to SCHEMA_VERSION; a fresh store gets a new epoch."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS lockd_schema ("
            "id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
        )
        version = await conn.fetchval("SELECT version FROM lockd_schema WHERE id = 1")
        if version is None:
            version = 0
            await conn.execute("INSERT INTO lockd_schema (id, version) VALUES (1, 0)")
        if version > SCHEMA_VERSION:
            raise rules.schema_too_new(version, SCHEMA_VERSION)
        if version == SCHEMA_VERSION:
            return
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                await conn.execute(statement)
        if version == 0:
            # A fresh store starts a new history: a new random epoch.
            await conn.execute(
                "INSERT INTO meta (id, epoch, revision) VALUES (1, $1, 0)", uuid.uuid4().hex
            )
        await conn.execute("UPDATE lockd_schema SET version = $1 WHERE id = 1", SCHEMA_VERSION)

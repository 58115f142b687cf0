"""Several `lockd auth` replicas on one throwaway PostgreSQL, for `--replicas N`.

The replicas are started one after the other, so the first holds the reaper's lease
(the leader); each has a directory and a port of its own and the default replica id
(`<hostname>:<port>`). The PostgreSQL server is shared: `close_replicas` stops every
replica, then removes the server once.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

from lockd.bench.authproc import POSTGRES_DATABASE, AuthServer, start_postgres
from lockd.bench.pgserver import PostgresServer, discard
from lockd.bench.procs import Reaper
from lockd.bench.scenarios.common import Common, start_auth


def check_replicas(common: Common, count: int) -> None:
    """ValueError unless `count` replicas can run on `common`'s store."""
    if count < 1:
        raise ValueError(f"--replicas must be 1 or more, not {count}")
    if count > 1 and common.store != "postgres":
        raise ValueError(f"--replicas {count} needs --store postgres (a store replicas share)")


async def start_replicas(reaper: Reaper, common: Common, count: int) -> list[AuthServer]:
    """`count` started replicas; one is an ordinary `start_auth` (any store)."""
    check_replicas(common, count)
    if count == 1:
        return [await start_auth(reaper, common)]
    server = await asyncio.to_thread(start_postgres)
    replicas: list[AuthServer] = []
    try:
        for index in range(count):
            replica = AuthServer(reaper, "postgres", common.heartbeat, server, f"auth{index}")
            replicas.append(replica)
            await replica.start()
    except BaseException:
        await close_replicas(replicas)
        raise
    return replicas


async def close_replicas(replicas: Sequence[AuthServer]) -> None:
    """Stop every replica; then remove their shared PostgreSQL server (if any)."""
    servers = {id(r.postgres): r.postgres for r in replicas if r.postgres is not None}
    for replica in replicas:
        replica.postgres = None  # shared: removed once, below, after every replica stopped
        await replica.close()
    for server in servers.values():
        await asyncio.to_thread(discard, server)


def replica_id(replica: AuthServer) -> str:
    """The id a replica gives itself by default (lockd.runtime.replication)."""
    return f"{socket.gethostname()}:{replica.port}"


def lease_holder(server: PostgresServer, lease: str = "reaper") -> str:
    """Who holds `lease` now, as the database says ("" when nobody does)."""
    return server.psql(
        f"SELECT holder FROM leases WHERE name = '{lease}' AND expires > now()",
        database=POSTGRES_DATABASE,
    )

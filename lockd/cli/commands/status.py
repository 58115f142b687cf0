"""`lockctl status`: the cluster, its store and revision, and every agent's sync state.

The first lines have the shape of `tctl status`:

    Cluster lockd.example.com
    Version 0.1.0
    CA pin  sha256:<hex>          (not for an `auth_service.insecure` cluster: no CA)

then the store (type, health, revision, epoch) and a table of the agents the auth server
knows: connected ones first, then those that disconnected (State `disconnected`).
A cluster of several auth replicas (PostgreSQL store) also gets a table of the replicas
(which one answered is marked `*`), and the agents' table says which replica each agent
is on; one auth server alone prints neither.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.tables import render_pairs, render_table
from lockd.client import AgentInfo, AuthClient, ClusterStatus, ReplicaInfo
from lockd.domain.timeparse import format_rfc3339

AGENT_HEADERS = ("Server ID", "Address", "State", "Applied", "Lag", "Last ack", "Last seen")
REPLICA_HEADERS = ("Replica", "Address", "State", "Revision", "Agents", "Last report")

EXAMPLES = """
lockctl status
lockctl status --format=json
lockctl status --format=json | jq -r .ca_pin      # for agent_service.ca_pin
lockctl --auth-server=auth.example.com:3025 --identity=alice.pem status
"""

DESCRIPTION = """\
Show the cluster name, version and CA pin (`sha256:` of the cluster CA's public key;
new agents check the auth server against it when they join: put it in their
agent_service.ca_pin, see lockctl tokens add), the store with its health, revision and
epoch, and one row per agent: its server ID, address, sync state, the revision it
applied, its lag behind the auth server in revisions, how long ago it last
acknowledged, and how long ago the server last received anything from it (Last seen).
The state is what the auth server observes: the agent's own report (syncing, synced,
degraded, stale), or `unresponsive` when a connected agent sent nothing for three
heartbeat intervals (frozen, or its network stalled), or `locked` when a lock on its
server_id cut it off. A cluster run with auth_service.insecure: true has no CA and no pin line.
JSON adds each agent's epoch. Remotely, the status needs list on lock."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "status",
        summary="show the cluster and every agent's sync state",
        description=DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare,
    )
    parser.add_argument(
        "--format", "-o", choices=("text", "json"), default="text", help="default text"
    )


def prepare(args: argparse.Namespace) -> Runner:
    fmt: str = args.format

    async def run(client: AuthClient, console: Console) -> int:
        status = await client.status()
        now = datetime.now(UTC)
        console.data(render_json(status) if fmt == "json" else render_text(status, now))
        return EXIT_OK

    return run


def _ordered(agents: tuple[AgentInfo, ...]) -> list[AgentInfo]:
    return sorted(agents, key=lambda agent: (not agent.connected, agent.server_id))


def render_text(status: ClusterStatus, now: datetime) -> str:
    head = [("Cluster", status.cluster_name), ("Version", status.version)]
    if status.ca_pin:
        head.append(("CA pin", status.ca_pin))
    connected = sum(agent.connected for agent in status.agents)
    gone = len(status.agents) - connected
    body = [
        ("Store", f"{status.store_type} ({'healthy' if status.store_healthy else 'UNHEALTHY'})"),
        ("Revision", str(status.revision)),
        ("Epoch", status.epoch),
        ("Agents", f"{connected} connected" + (f", {gone} disconnected" if gone else "")),
    ]
    several = len(status.replicas) > 1
    rows = [_agent_row(agent, now, several) for agent in _ordered(status.agents)]
    headers = (*AGENT_HEADERS, "Replica") if several else AGENT_HEADERS
    parts = [render_pairs(head), render_pairs(body)]
    if several:
        replica_rows = [_replica_row(replica, status, now) for replica in status.replicas]
        parts.append(render_table(REPLICA_HEADERS, replica_rows))
    parts.append(render_table(headers, rows))
    return "\n".join(parts)


def _agent_row(agent: AgentInfo, now: datetime, with_replica: bool) -> list[str]:
    row = [
        agent.server_id,
        agent.address,
        agent.state if agent.connected or agent.state == "locked" else "disconnected",
        str(agent.applied_revision),
        str(agent.lag),
        ago(agent.last_ack, now),
        ago(agent.last_frame, now),
    ]
    return [*row, agent.replica_id] if with_replica else row


def _replica_row(replica: ReplicaInfo, status: ClusterStatus, now: datetime) -> list[str]:
    state = "down" if not replica.alive else "healthy" if replica.healthy else "UNHEALTHY"
    mark = " *" if replica.replica_id == status.replica_id else ""
    return [
        replica.replica_id + mark,
        replica.address,
        state,
        str(replica.revision),
        str(replica.agents),
        ago(replica.heartbeat_time, now),
    ]


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60)}s ago"
    return format_rfc3339(moment)


def render_json(status: ClusterStatus) -> str:
    document = {
        "cluster_name": status.cluster_name,
        "version": status.version,
        "ca_pin": status.ca_pin,
        "store": {"type": status.store_type, "healthy": status.store_healthy},
        "epoch": status.epoch,
        "revision": status.revision,
        "agents": [
            {
                "server_id": agent.server_id,
                "address": agent.address,
                "connected": agent.connected,
                "state": agent.state,
                "applied_revision": agent.applied_revision,
                "lag": agent.lag,
                "epoch": agent.epoch,
                "last_ack": format_rfc3339(agent.last_ack) if agent.last_ack else None,
                "last_seen": format_rfc3339(agent.last_frame) if agent.last_frame else None,
                "replica_id": agent.replica_id,
            }
            for agent in _ordered(status.agents)
        ],
        "replica_id": status.replica_id,
        "replicas": [
            {
                "replica_id": replica.replica_id,
                "address": replica.address,
                "healthy": replica.healthy,
                "alive": replica.alive,
                "revision": replica.revision,
                "epoch": replica.epoch,
                "agents": replica.agents,
                "heartbeat_time": format_rfc3339(replica.heartbeat_time)
                if replica.heartbeat_time
                else None,
            }
            for replica in status.replicas
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

"""`lockctl status` for a cluster of replicas: a replicas table and each agent's replica."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from lockd.cli.commands.status import render_json, render_text
from lockd.client import AgentInfo, ClusterStatus, ReplicaInfo


def status() -> ClusterStatus:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    agents = (
        AgentInfo("node-1", "ipv4:10.0.0.7:5", "synced", 7, 0, now, True, "e", replica_id="a"),
        AgentInfo("node-2", "ipv4:10.0.0.8:6", "synced", 7, 0, now, True, "e", replica_id="b"),
    )
    replicas = (
        ReplicaInfo("a", "10.0.0.1:3025", True, 7, "e", 1, now, True),
        ReplicaInfo("b", "10.0.0.2:3025", False, 6, "e", 1, now - timedelta(seconds=30), False),
    )
    return ClusterStatus("c", "0.1.0", "", "postgres", True, "e", 7, agents, replicas, "a")


def test_status_text_lists_the_replicas_and_each_agents_replica() -> None:
    """Several replicas: a table of them (the answering one marked, a silent one down) and
    a Replica column in the agents' table."""
    text = render_text(status(), datetime(2030, 1, 1, tzinfo=UTC))
    lines = text.splitlines()
    replicas = [line.split() for line in lines if line.startswith(("a *", "b "))]
    assert replicas[0][:5] == ["a", "*", "10.0.0.1:3025", "healthy", "7"]
    assert replicas[1][:4] == ["b", "10.0.0.2:3025", "down", "6"]
    agents = [line.split() for line in lines if line.startswith("node-")]
    assert [(row[0], row[-1]) for row in agents] == [("node-1", "a"), ("node-2", "b")]


def test_status_json_names_every_replica_and_the_answering_one() -> None:
    """JSON has the replicas, the replica that answered and each agent's replica."""
    document = json.loads(render_json(status()))
    assert document["replica_id"] == "a"
    assert [(r["replica_id"], r["alive"]) for r in document["replicas"]] == [
        ("a", True),
        ("b", False),
    ]
    assert [agent["replica_id"] for agent in document["agents"]] == ["a", "b"]

"""`lockctl lock --wait` and `lockctl status` with live (fake) agents on the stream."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest

from tests.cli.fake_agent import FakeAgent
from tests.cli.helpers import AuthServer, lockctl, start_auth_server, wait_until

pytestmark = pytest.mark.slow

StartAgent = Callable[[AuthServer, str], FakeAgent]
CREATED = re.compile(r'Created a lock with name "[0-9a-f-]{36}"\.\n')


def caught_up(server: AuthServer, *agent_ids: str) -> None:
    """Wait until the server has each agent's ack of its current revision."""

    def done() -> bool:
        status = server.status()
        applied = {a.server_id: a.applied_revision for a in status.agents if a.connected}
        return all(applied.get(agent_id) == status.revision for agent_id in agent_ids)

    wait_until(done, what=f"agents {agent_ids} to ack")


def test_wait_without_agents_succeeds_at_once(fresh_server: AuthServer) -> None:
    """lock --wait with no agents connected succeeds at once with a note."""
    result = lockctl(fresh_server, "lock", "--user=mallory", "--wait")
    assert result.returncode == 0
    assert CREATED.fullmatch(result.stdout)
    assert result.stderr == "note: no agents are connected; nothing to wait for\n"


def test_wait_until_every_agent_applied(server: AuthServer, agents: StartAgent) -> None:
    """lock --wait returns once every connected agent has applied the lock's revision."""
    agents(server, "node-a")
    agents(server, "node-b")
    caught_up(server, "node-a", "node-b")
    result = lockctl(server, "lock", "--user=mallory", "--wait=20s")
    assert result.returncode == 0, result.stderr
    assert CREATED.fullmatch(result.stdout)
    assert re.fullmatch(
        r"(waiting: lock applied by [01]/2 agents\n)*lock applied by 2/2 agents in \d+\.\d\ds\n",
        result.stderr,
    ), result.stderr
    revision = server.status().revision
    applied = {a.server_id: a.applied_revision for a in server.status().agents if a.connected}
    assert applied == {"node-a": revision, "node-b": revision}


def test_wait_times_out_naming_the_silent_agent(server: AuthServer, agents: StartAgent) -> None:
    """lock --wait gives up after its timeout and names the agent that did not confirm."""
    agents(server, "node-good")
    stuck = agents(server, "node-stuck")
    caught_up(server, "node-good", "node-stuck")
    before = server.status().revision
    stuck.stop_acking()

    result = lockctl(server, "lock", "--user=mallory", "--wait=1s")
    assert result.returncode == 1
    assert CREATED.fullmatch(result.stdout)  # the lock exists even though not confirmed
    lines = result.stderr.splitlines()
    # The stuck agent sends nothing any more: the server may already see it unresponsive.
    assert re.fullmatch(
        f"ERROR: 1 of 2 agents did not confirm revision {before + 1} within 1s: "
        f"node-stuck \\(at revision {before}, (synced|unresponsive)\\)",
        lines[-1],
    ), lines[-1]
    assert "node-good" not in lines[-1]
    assert all(line.startswith("waiting: lock applied by") for line in lines[:-1])


def test_status_lists_agents(fresh_server: AuthServer, agents: StartAgent) -> None:
    """status lists the connected agents with their revision and state."""
    agents(fresh_server, "node-a")
    agents(fresh_server, "node-b")
    assert lockctl(fresh_server, "lock", "--user=x").returncode == 0
    caught_up(fresh_server, "node-a", "node-b")
    status = fresh_server.status()

    result = lockctl(fresh_server, "status")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        "Cluster lockctl.test",
        "Version 0.1.0",
        "",
        "Store    sqlite (healthy)",
        f"Revision {status.revision}",  # the presets, then the lock
        f"Epoch    {status.epoch}",
        "Agents   2 connected",
    ]
    assert lines[7] == ""
    assert lines[8].split("  ")[0] == "Server ID"
    assert (
        re.sub(r" {2,}", "|", lines[8]) == "Server ID|Address|State|Applied|Lag|Last ack|Last seen"
    )
    rows = [re.split(r" {2,}", line) for line in lines[10:]]
    assert [row[0] for row in rows] == ["node-a", "node-b"]
    for row in rows:
        assert row[1].startswith("ipv4:127.0.0.1:")
        assert row[2:5] == ["synced", str(status.revision), "0"]
        assert re.fullmatch(r"\d+\.\ds ago", row[5])
        assert re.fullmatch(r"\d+\.\ds ago", row[6])

    as_json = json.loads(lockctl(fresh_server, "status", "--format=json").stdout)
    assert as_json["cluster_name"] == "lockctl.test"
    assert as_json["revision"] == status.revision
    assert [agent["server_id"] for agent in as_json["agents"]] == ["node-a", "node-b"]
    assert all(agent["lag"] == 0 and agent["connected"] for agent in as_json["agents"])


def test_status_without_agents_and_without_ca(fresh_server: AuthServer) -> None:
    """status of a cluster without agents and without a CA shows the store and no CA pin."""
    result = lockctl(fresh_server, "status")
    assert result.returncode == 0
    # No `CA pin` line while the cluster has no CA (the security issue adds one).
    assert result.stdout.startswith("Cluster lockctl.test\nVersion 0.1.0\n\nStore    sqlite")
    assert result.stdout.endswith(
        "Agents   0 connected\n\n"
        "Server ID  Address  State  Applied  Lag  Last ack  Last seen\n"
        "---------  -------  -----  -------  ---  --------  ---------\n"
    )


def test_a_locked_admin_gets_the_spec_message(fresh_server: AuthServer) -> None:
    """Locks apply to the local admin too (SPEC §6): the exact §3 refusal, exit 1."""
    result = lockctl(fresh_server, "lock", "--user=Admin", "--message=Maintenance.", "--ttl=1h")
    assert result.returncode == 0
    refused = lockctl(fresh_server, "get", "locks")
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1,
        "",
        'ERROR: lock targeting User:"Admin" is in force: Maintenance.\n',
    )


def test_static_locking_mode_wins(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A locking mode set in the config file wins: a cap document cannot change it."""
    server = start_auth_server(tmp_path_factory.mktemp("static"), locking_mode="strict")
    try:
        cap = "kind: cluster_auth_preference\nversion: v2\nspec: {locking_mode: best_effort}\n"
        result = lockctl(server, "create", "-f", "-", stdin=cap)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            "ERROR: the locking mode is set in the auth server's config file "
            "(auth_service.authentication.locking_mode); change it there and restart\n",
        )
        assert "locking_mode: strict\n" in lockctl(server, "get", "cap").stdout
    finally:
        server.stop()

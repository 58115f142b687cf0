"""Where a client dials: a relative socket path is a file, not a DNS name (issue 15,
item 14: `AgentClient.connect("agentA/agent.sock")` failed with a c-ares DNS error)."""

from __future__ import annotations

import pytest

from lockd.client import AgentClient, channel_target
from tests.agent.helpers import Cluster


async def test_an_agent_client_reaches_the_agent_through_a_relative_socket_path(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`AgentClient.connect("dir/agent.sock")` opens the socket file under the working
    directory and answers GetStatus."""
    await cluster.start_auth()
    agent = await cluster.start_agent(persist=False)
    monkeypatch.chdir(agent.socket.parent.parent)
    relative = f"{agent.socket.parent.name}/{agent.socket.name}"
    async with AgentClient.connect(relative) as client:
        status = await client.status()
    assert status.server_id == agent.server_id


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("agent.sock", "unix:agent.sock"),
        ("agentA/agent.sock", "unix:agentA/agent.sock"),
        ("./agent.sock", "unix:./agent.sock"),
        ("../run/agent.sock", "unix:../run/agent.sock"),
        ("/var/lib/lockd/agent.sock", "unix:/var/lib/lockd/agent.sock"),
        ("unix:/run/a.sock", "unix:/run/a.sock"),
        ("dns:///auth.example.com:3025", "dns:///auth.example.com:3025"),
        ("127.0.0.1:3025", "127.0.0.1:3025"),
        ("auth.example.com:3025", "auth.example.com:3025"),
        ("[::1]:3025", "[::1]:3025"),
    ],
)
def test_channel_targets_take_paths_as_files_and_host_port_as_tcp(
    address: str, target: str
) -> None:
    """Schemes pass through, `host:port` is TCP, anything else a socket file."""
    assert channel_target(address) == target

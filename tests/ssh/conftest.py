"""Fixtures of the SSH suite: a real `lockd auth` and a node (real `lockd agent`, sshd and
`lockd ssh-session guard`), shared by the modules that lock in one cluster (each lock
is deleted after its test), and an admin client. Skipped, with the reason,
where OpenSSH or root is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from lockd.bench.sshd import why_no_sshd
from lockd.client import AgentClient, AuthClient
from tests.cli.helpers import AuthServer
from tests.ssh.helpers import Node, start_cluster, start_node
from tests.support import eventually

pytestmark = pytest.mark.slow

_missing = why_no_sshd()
if _missing is not None:
    pytest.skip(_missing, allow_module_level=True)

MAPPED_USER = "bob"  # agent_service.ssh.logins maps the login root to this lockd user


@pytest.fixture(scope="package")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    server = start_cluster(tmp_path_factory.mktemp("ssh"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def node(auth: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    started = start_node(tmp_path_factory.mktemp("node"), auth, logins={"root": MAPPED_USER})
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
async def admin(auth: AuthServer, node: Node) -> AsyncIterator[AuthClient]:
    """An admin client on the auth server's admin socket; afterwards every lock is gone,
    also from the node agent's view (else the next test's login could still be refused)."""
    async with AuthClient.connect(f"unix:{auth.admin_socket}") as client:
        try:
            yield client
        finally:
            for lock in await client.list_locks():
                await client.delete_lock(lock.name)
            async with AgentClient.connect(node.socket) as agent:

                async def no_lock_left() -> bool:
                    return (await agent.status()).locks_in_force == 0

                await eventually(no_lock_left, what="no lock in force on the node")

"""Fixtures of the lockctl suite: a real `lockd auth` subprocess per test module.

`auth_server` is shared by the tests of a module (starting one costs about a second) and
wiped before each test (`clean`), so tests stay independent. Tests that need a server of
their own (one that ends up locked, or an exact agent list) use `fresh_server`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.cli.fake_agent import FakeAgent
from tests.cli.helpers import AuthServer, reset, start_auth_server


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    server = start_auth_server(tmp_path_factory.mktemp("lockctl"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(auth_server: AuthServer) -> AuthServer:
    """The module's auth server, emptied of locks, roles and users."""
    return _fresh(auth_server)


@pytest.fixture
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    server = start_auth_server(tmp_path_factory.mktemp("fresh"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def agents() -> Iterator[Callable[[AuthServer, str], FakeAgent]]:
    """Start fake agents (`agents(server, "agent-id")`); all are closed at teardown."""
    started: list[FakeAgent] = []

    def start(server: AuthServer, agent_id: str) -> FakeAgent:
        agent = FakeAgent(server.address, agent_id)
        started.append(agent)
        return agent.start()

    yield start
    for agent in started:
        agent.close()


@pytest.fixture(scope="module")
def tls_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """A `lockd auth` with TLS on (no `insecure: true`): mTLS on its port, a join port."""
    server = start_auth_server(tmp_path_factory.mktemp("tls"), tls=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tls_server(tls_auth_server: AuthServer) -> AuthServer:
    """The module's TLS auth server, emptied of locks, roles and users."""
    return _fresh(tls_auth_server)


def _fresh(server: AuthServer) -> AuthServer:
    """A still-running module server with its resources removed (fails if it died)."""
    if server.process.poll() is not None:
        pytest.fail(f"lockd auth died: {server.log.read_text()}")
    reset(server)
    return server

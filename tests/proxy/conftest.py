"""Fixtures of the proxy suite: a real auth server and node agent, a CA, the proxy.

`cluster` is the agent suite's: an `AuthApp` on loopback and an `AgentApp` on a Unix
socket, in this process. `start_proxy` runs a `ProxyService` against that agent and
stops it at teardown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from lockd.proxy.proxy_config import ListenerConfig
from lockd.proxy.proxy_service import ProxyService
from tests.agent.helpers import Cluster
from tests.proxy.helpers import Certificates, proxy_config

StartProxy = Callable[..., Awaitable[ProxyService]]


@pytest.fixture
async def cluster(tmp_path: Path, socket_dir: Path) -> AsyncIterator[Cluster]:
    manager = Cluster(tmp_path, socket_dir)
    try:
        await manager.start_auth(memory=True)
        await manager.start_agent(persist=False)
        yield manager
    finally:
        await manager.close()


@pytest.fixture
def certs(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path / "certs")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def start_proxy(
    cluster: Cluster, certs: Certificates, registry: CollectorRegistry
) -> AsyncIterator[StartProxy]:
    started: list[ProxyService] = []

    async def start(*listeners: ListenerConfig, **settings: object) -> ProxyService:
        config = proxy_config(
            cluster.agents[-1].socket, await certs.server(), *listeners, **settings
        )
        service = await ProxyService.start(config, registry)
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            await service.stop()

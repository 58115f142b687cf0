"""The running proxy: its listeners, its node agent client, its metrics; stopped cleanly.

`ProxyService.start(config, registry)` opens the agent channel and every listener (a
listener that cannot bind stops the start with a clear error). `stop()` is the SIGTERM
path: stop accepting everywhere, let live connections drain for `shutdown_timeout`,
end the rest with a message, close the agent channel.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from lockd.client import AgentClient
from lockd.domain.errors import UnavailableError
from lockd.lifetime import StopOnExit
from lockd.obs.proxy_metrics import ProxyMetrics
from lockd.proxy.cert_identity import client_tls_context
from lockd.proxy.listener import Listener
from lockd.proxy.proxy_config import ProxyConfig

SIDECAR_NAME = "lockd-proxy"


class ProxyService(StopOnExit):
    def __init__(self, config: ProxyConfig, agent: AgentClient, listeners: list[Listener]):
        self.config = config
        self.agent = agent
        self.listeners = listeners

    @classmethod
    async def start(cls, config: ProxyConfig, registry: CollectorRegistry) -> ProxyService:
        tls = await asyncio.to_thread(client_tls_context, config.tls)  # file reads
        metrics = ProxyMetrics(registry)
        agent = AgentClient.connect(config.agent_socket, sidecar=SIDECAR_NAME)
        listeners = [Listener(item, tls, agent, metrics) for item in config.listeners]
        service = cls(config, agent, listeners)
        try:
            for listener in listeners:
                try:
                    await listener.start()
                except OSError as error:
                    where = f'listener "{listener.config.name}" ({listener.config.listen_addr})'
                    raise UnavailableError(f"cannot listen for {where}: {error}") from None
        except BaseException:
            await service.stop()
            raise
        return service

    def listener(self, name: str) -> Listener:
        return next(listener for listener in self.listeners if listener.config.name == name)

    async def stop(self) -> None:
        for listener in self.listeners:
            listener.stop_accepting()
        timeout = self.config.shutdown_timeout.total_seconds()
        await asyncio.gather(*(listener.drain(timeout) for listener in self.listeners))
        await self.agent.close()

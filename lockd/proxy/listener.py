"""One listening socket of the proxy: accepting within a connection limit, and draining.

Past `max_connections` a new client is turned away at once (PostgreSQL: a FATAL
`too many connections` that libpq shows in answer to its SSLRequest; tcp: closed) and
never costs a handshake. `stop_accepting()` closes the socket; `drain()` lets live
connections finish for up to a timeout, then ends the rest (PostgreSQL clients are told
`lockd proxy is shutting down`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import structlog

from lockd.client import AgentClient
from lockd.domain.addresses import parse_host_port
from lockd.obs.proxy_metrics import ProxyMetrics
from lockd.proxy import pg_wire
from lockd.proxy.cancel_keys import CancelKeys
from lockd.proxy.client_connection import SHUTDOWN, Connection, Ending
from lockd.proxy.proxy_config import ListenerConfig
from lockd.proxy.relay import Stream, bound_writes

_log = structlog.get_logger("lockd.proxy")


class Listener:
    def __init__(
        self,
        config: ListenerConfig,
        tls: ssl.SSLContext,
        agent: AgentClient,
        metrics: ProxyMetrics,
    ) -> None:
        self.config = config
        self.connections: dict[Connection, asyncio.Task[None]] = {}
        self.cancel_keys = CancelKeys()
        self._tls = tls
        self._agent = agent
        self._metrics = metrics
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (after `start`): the configured one, or the one port 0 got."""
        if self._server is None or not self._server.sockets:
            return parse_host_port(self.config.listen_addr, allow_port_zero=True).port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        address = parse_host_port(self.config.listen_addr, allow_port_zero=True)
        self._server = await asyncio.start_server(
            self._accept, address.host, address.port, limit=self.config.buffer_bytes
        )
        _log.info(
            "proxy listening",
            listener=self.config.name,
            protocol=self.config.protocol,
            address=f"{address.host}:{self.port}",
        )

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for live connections to end, then end the rest."""
        if self.connections:
            await asyncio.wait(list(self.connections.values()), timeout=grace)
        for connection in list(self.connections):
            connection.end(Ending(SHUTDOWN, "shutdown"))
        if self.connections:
            await asyncio.wait(list(self.connections.values()), timeout=5.0)
        for task in self.connections.values():
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = Stream(reader, writer)
        bound_writes(stream, self.config.buffer_bytes)
        protocol = self.config.protocol
        if len(self.connections) >= self.config.max_connections:
            self._metrics.connections_total.labels(protocol=protocol, result="over_limit").inc()
            if protocol == "postgres":
                text = f'lockd proxy: too many connections on listener "{self.config.name}"'
                writer.write(pg_wire.error_response(text, pg_wire.TOO_MANY_CONNECTIONS))
                with contextlib.suppress(OSError):
                    await writer.drain()
            await stream.close()
            return
        connection = Connection(
            stream, self.config, self._tls, self._agent, self._metrics, self.cancel_keys
        )
        task = asyncio.current_task()
        assert task is not None  # a client_connected_cb always runs in a task
        self.connections[connection] = task
        active = self._metrics.active_connections.labels(protocol=protocol)
        active.inc()
        try:
            await connection.serve()
        except Exception:
            # A bug, not the client's doing: keep serving the others, and say so loudly.
            _log.exception("proxy connection failed", listener=self.config.name)
        finally:
            active.dec()
            del self.connections[connection]

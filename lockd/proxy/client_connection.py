"""One client connection through the proxy: handshake, session, relay, the end.

Order of events (docs/proxy.md): TLS with a cluster certificate → the identity from it →
the session registered with the node agent (check and subscribe in one step on the
agent) → the upstream dialled (PostgreSQL: logged in as the configured user) → relay.
Everything before the relay runs under the listener's handshake timeout. The relay ends
when a side closes, the connection idles, the agent terminates the session (a lock, or
strict mode), or the proxy shuts down. PostgreSQL clients are told why with a FATAL
ErrorResponse carrying the exact text, written between two messages of the stream; a
refused http client gets a response to its first request (`http_frontend`). A
PostgreSQL CancelRequest (a connection of its own) is passed on to the backend of the
session its key names (`_cancel`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from lockd.client import AgentClient, Session, SessionDenied, SessionTermination
from lockd.domain.errors import LockdError, UnauthenticatedError, UnavailableError, ValidationError
from lockd.domain.identity import Identity
from lockd.domain.sessions import SessionMetadata, SessionProtocol
from lockd.obs.proxy_metrics import ProxyMetrics
from lockd.proxy import http_frontend, pg_frontend, pg_wire, upstream
from lockd.proxy.cancel_keys import CancelKeys
from lockd.proxy.cert_identity import identity_from_certificate
from lockd.proxy.proxy_config import ListenerConfig
from lockd.proxy.relay import Relay, RelayEnd, Stream

_log = structlog.get_logger("lockd.proxy")

SHUTDOWN = "lockd proxy is shutting down"
AGENT_UNAVAILABLE = (
    "lockd proxy: the node agent is unavailable, so new connections are refused: {error}"
)
# How long the farewell ErrorResponse may take to leave before the socket is closed.
FAREWELL_TIMEOUT = 1.0
# What an http listener answers a refused first request with, by refusal.
SESSION_PROTOCOLS = {
    "postgres": SessionProtocol.DB,
    "tcp": SessionProtocol.TCP,
    "http": SessionProtocol.APP,
}
HTTP_STATUS = {"denied": 403, "tls_failed": 403, "agent_unavailable": 503, "upstream_failed": 502}


@dataclass(frozen=True, slots=True)
class Ending:
    """Why the proxy ends a live connection: the text the client sees, the metric reason."""

    text: str
    reason: str


class Refused(Exception):
    """A connection refused before the relay: the metric result and what the client sees."""

    def __init__(self, result: str, text: str, sqlstate: str = "") -> None:
        super().__init__(text)
        self.result = result
        self.text = text
        self.sqlstate = sqlstate


class Connection:
    """Serves one accepted client; `end()` asks a live one to stop (shutdown)."""

    def __init__(
        self,
        client: Stream,
        listener: ListenerConfig,
        tls: ssl.SSLContext,
        agent: AgentClient,
        metrics: ProxyMetrics,
        cancel_keys: CancelKeys,
    ) -> None:
        self.client = client
        self.listener = listener
        self.relay: Relay | None = None
        self._cancel_keys = cancel_keys
        self._cancel_key = b""  # the key this session's client got (postgres)
        self._request_head = b""  # the first request's head (http), relayed first
        self._tls = tls
        self._agent = agent
        self._metrics = metrics
        self._protocol = listener.protocol
        self._ending: asyncio.Future[Ending] = asyncio.get_running_loop().create_future()
        peer = client.writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")

    def end(self, ending: Ending) -> None:
        """End the connection now. A relaying one is told why and closed right here, in
        this callback: a lock that hits a thousand connections must not wait for a
        thousand task switches. The relay's tasks are torn down afterwards."""
        if self._ending.done():
            return
        self._ending.set_result(ending)
        self._cancel_keys.withdraw(self._cancel_key)  # no cancel for an ended session
        relay = self.relay
        if relay is None:
            return
        self._metrics.terminations_total.labels(protocol=self._protocol, reason=ending.reason).inc()
        # Between two messages only; the pumps write nothing more once this runs (they
        # are cancelled before they resume).
        writer = self.client.writer
        if relay.framer is not None and relay.framer.at_boundary:
            writer.write(pg_wire.error_response(ending.text, pg_wire.ADMIN_SHUTDOWN))
        if writer.transport.get_write_buffer_size() == 0:
            # Everything (the FATAL included) is with the kernel: drop the connection
            # without TLS's close_notify exchange, which costs half a millisecond per
            # connection and waits for the client. The FIN follows the data.
            writer.transport.abort()
        else:
            writer.close()  # flush what is queued first

    def _count(self, result: str) -> None:
        self._metrics.connections_total.labels(protocol=self._protocol, result=result).inc()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.listener.handshake_timeout.total_seconds()
        try:
            async with _before(deadline):
                startup = await self._client_handshake()
                if startup is not None and startup.kind is pg_wire.StartupKind.CANCEL_REQUEST:
                    await self._cancel(startup)
                    return
            async with self._established(startup, deadline) as (session, server, preamble):
                self._count("accepted")
                await self._relay(session, server, preamble)
        except Refused as refused:
            self._count(refused.result)
            _log.info(
                "connection refused",
                listener=self.listener.name,
                remote=self.remote,
                result=refused.result,
                reason=refused.text,
            )
            answer = self._refusal_answer(refused)
            if answer and not self.client.writer.is_closing():
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(FAREWELL_TIMEOUT):
                        self.client.writer.write(answer)
                        await self.client.writer.drain()
        finally:
            self._cancel_keys.withdraw(self._cancel_key)
            await self.client.close()

    @contextlib.asynccontextmanager
    async def _established(
        self, startup: pg_wire.StartupPacket | None, deadline: float
    ) -> AsyncIterator[tuple[Session, Stream, bytes]]:
        """Session and upstream, still before the handshake deadline."""
        postgres = self._protocol == "postgres"
        async with contextlib.AsyncExitStack() as stack:
            async with _before(deadline):
                identity = self._identity()
                session = await self._open_session(stack, identity, postgres)
                server = await self._upstream(startup)
                stack.push_async_callback(server.close)
                preamble = await self._login(server, startup, identity.user)
            yield session, server, preamble

    async def _cancel(self, request: pg_wire.StartupPacket) -> None:
        """Pass a CancelRequest on to the backend of the session its key names, or drop
        it: an unknown key (a guess, or a session that ended or was ended), or a key of
        another user's session when the request came over TLS with a certificate."""
        target = self._cancel_keys.target(request.cancel_key)
        tls = self.client.writer.get_extra_info("ssl_object") is not None
        if target is None or (tls and self._identity().user != target.user):
            why = "no live session has this key" if target is None else "another user's key"
            raise Refused("cancel_dropped", f"cancel request dropped: {why}")
        try:
            server = await self._upstream(request)
        except Refused as refused:
            raise Refused(refused.result, refused.text) from None  # a cancel gets no answer
        try:
            server.writer.write(pg_wire.encode_cancel_request(target.upstream_key))
            await server.writer.drain()
        finally:
            await server.close()
        self._count("cancel_forwarded")

    def _refusal_answer(self, refused: Refused) -> bytes:
        """What the client is told: a FATAL (postgres), a response to its request (http)."""
        if refused.sqlstate:
            return pg_wire.error_response(refused.text, refused.sqlstate)
        status = HTTP_STATUS.get(refused.result)
        if self._request_head and status is not None:
            return http_frontend.response(status, refused.text)
        return b""

    async def _client_handshake(self) -> pg_wire.StartupPacket | None:
        try:
            if self._protocol == "postgres":
                return await pg_frontend.accept_tls_client(self.client, self._tls)
            await self.client.writer.start_tls(self._tls)
            if self._protocol == "http":
                self._request_head = await http_frontend.read_request_head(self.client)
            return None
        except (ssl.SSLError, ConnectionError, UnauthenticatedError) as error:
            raise Refused("tls_failed", str(error)) from None
        except (pg_frontend.ClientGone, ValidationError, asyncio.IncompleteReadError) as error:
            raise Refused("protocol_error", str(error) or "the client closed") from None

    def _identity(self) -> Identity:
        ssl_object = self.client.writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        try:
            return identity_from_certificate(der, login=self.listener.upstream.database_user)
        except LockdError as error:
            raise Refused("tls_failed", str(error), pg_wire.INVALID_AUTHORIZATION) from None

    async def _open_session(
        self, stack: contextlib.AsyncExitStack, identity: Identity, postgres: bool
    ) -> Session:
        """Register the session with the agent; it ends when `stack` closes."""
        try:
            opening = self._agent.open_session(identity, metadata=self._metadata())
            return await stack.enter_async_context(opening)
        except SessionDenied as denied:
            sqlstate = pg_wire.INVALID_AUTHORIZATION if postgres else ""
            raise Refused("denied", str(denied), sqlstate) from None
        except UnavailableError as error:
            sqlstate = pg_wire.CANNOT_CONNECT_NOW if postgres else ""
            text = AGENT_UNAVAILABLE.format(error=error)
            raise Refused("agent_unavailable", text, sqlstate) from None

    def _metadata(self) -> SessionMetadata:
        protocol = SESSION_PROTOCOLS[self._protocol]
        config = self.listener.upstream
        where = str(config.unix_socket) if config.unix_socket else config.address
        target = f"{self._protocol}://{where}"
        if config.database_user:
            target = f"{self._protocol}://{config.database_user}@{where}"
        return SessionMetadata(
            protocol=protocol, remote_address=self.remote, target_resource=target
        )

    async def _upstream(self, startup: pg_wire.StartupPacket | None) -> Stream:
        config = self.listener.upstream
        postgres_sqlstate = pg_wire.CONNECTION_FAILURE if startup is not None else ""
        try:
            server = await upstream.dial(
                config, self.listener.buffer_bytes, tls_now=config.tls and startup is None
            )
            if config.tls and startup is not None:
                await upstream.negotiate_tls(server, config)
        except (UnavailableError, OSError, ssl.SSLError, asyncio.IncompleteReadError) as error:
            raise Refused("upstream_failed", f"lockd proxy: {error}", postgres_sqlstate) from None
        return server

    async def _login(
        self, server: Stream, startup: pg_wire.StartupPacket | None, user: str
    ) -> bytes:
        if startup is None:
            return b""

        def client_key(upstream_key: bytes) -> bytes:
            self._cancel_key = self._cancel_keys.issue(upstream_key, user)
            return self._cancel_key

        try:
            return await upstream.postgres_login(
                server, startup, self.listener.upstream, client_key
            )
        except upstream.UpstreamRefused as refused:
            # The upstream's own error (e.g. database "x" does not exist), as it sent it.
            self.client.writer.write(refused.raw)
            raise Refused("upstream_failed", str(refused)) from None
        except ValidationError as error:
            raise Refused("protocol_error", str(error), pg_wire.PROTOCOL_VIOLATION) from None
        except (UnavailableError, OSError, asyncio.IncompleteReadError) as error:
            text = f"lockd proxy: upstream login failed: {error}"
            raise Refused("upstream_failed", text, pg_wire.CONNECTION_FAILURE) from None

    async def _relay(self, session: Session, server: Stream, preamble: bytes) -> None:
        postgres = self._protocol == "postgres"
        self.client.writer.write(preamble)
        server.writer.write(self._request_head)  # http: the request that came with the TLS
        relay = self.relay = Relay(
            self.client,
            server,
            chunk=self.listener.buffer_bytes,
            idle_timeout=self.listener.idle_timeout.total_seconds(),
            framer=pg_wire.MessageFramer() if postgres else None,
        )
        session.on_terminated(self._terminated)
        relaying = asyncio.create_task(relay.run())
        try:
            await asyncio.wait((relaying, self._ending), return_when=asyncio.FIRST_COMPLETED)
            # The relay's own end wins a tie: the client is gone, nobody to tell.
            end = relaying.result() if relaying.done() else None
        finally:
            relaying.cancel()
            await asyncio.gather(relaying, return_exceptions=True)
            self._count_bytes(relay)
        if end is None:
            ending = self._ending.result()
            # One line per lock is the agent's; per connection, debug only.
            _log.debug("connection terminated", remote=self.remote, reason=ending.text)
        else:
            _log.info("connection ended", listener=self.listener.name, remote=self.remote, by=end)
            if end is RelayEnd.IDLE and postgres and relay.framer and relay.framer.at_boundary:
                await self._send_farewell("lockd proxy: idle timeout", pg_wire.ADMIN_SHUTDOWN)
        # The client first: it is the one waiting; the upstream and the agent's
        # bookkeeping follow.
        await self.client.close()

    def _terminated(self, termination: SessionTermination) -> None:
        """The agent's termination signal (a lock, strict mode). When the agent is lost,
        the client library ends strict sessions (cause agent_unavailable) and keeps
        best_effort ones, registering them again once the agent is back."""
        self.end(Ending(termination.reason, termination.cause))

    async def _send_farewell(self, text: str, sqlstate: str) -> None:
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(FAREWELL_TIMEOUT):
                await pg_frontend.send_fatal(self.client, text, sqlstate)

    def _count_bytes(self, relay: Relay) -> None:
        counter = self._metrics.bytes_relayed_total
        counter.labels(protocol=self._protocol, direction="to_upstream").inc(
            relay.counters.to_upstream
        )
        counter.labels(protocol=self._protocol, direction="to_client").inc(relay.counters.to_client)


@contextlib.asynccontextmanager
async def _before(deadline: float) -> AsyncIterator[None]:
    """Everything before the relay must be done by the handshake deadline."""
    try:
        async with asyncio.timeout_at(deadline):
            yield
    except TimeoutError:
        raise Refused("handshake_timeout", "handshake timeout") from None

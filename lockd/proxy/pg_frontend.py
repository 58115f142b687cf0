"""The client side of a PostgreSQL connection: SSLRequest, TLS, then the StartupMessage.

libpq sends `SSLRequest` (or `GSSENCRequest` first, which is declined with 'N' so it
falls back to SSL); the proxy answers 'S' and runs the TLS handshake, which requires a
client certificate from the cluster CA. Only then is the StartupMessage read. A
CancelRequest may come before TLS or after it (its key is its credential). A client
that skips TLS gets a FATAL ErrorResponse saying what to configure. Bytes a client sends
after its SSLRequest before the handshake would be read as if they came through TLS, so
such a client is refused (the lesson of CVE-2021-23214).
"""

from __future__ import annotations

import asyncio
import ssl

from lockd.domain.errors import UnauthenticatedError, ValidationError
from lockd.proxy import pg_wire
from lockd.proxy.relay import Stream

TLS_REQUIRED = (
    "lockd proxy: TLS with a client certificate from the cluster CA is required "
    "(sslmode=verify-ca with sslcert, sslkey and sslrootcert from lockctl auth sign --format=db)"
)


class ClientGone(Exception):
    """The client closed or sent something that ends the connection without an answer."""


async def read_startup(stream: Stream) -> pg_wire.StartupPacket:
    try:
        header = await stream.reader.readexactly(4)
        rest = await stream.reader.readexactly(pg_wire.startup_length(header) - 4)
    except asyncio.IncompleteReadError:
        raise ClientGone("the client closed during the startup") from None
    return pg_wire.parse_startup(header + rest)


async def send_fatal(stream: Stream, text: str, sqlstate: str) -> None:
    """Write a FATAL ErrorResponse (the client shows the text) and flush it."""
    stream.writer.write(pg_wire.error_response(text, sqlstate))
    await stream.writer.drain()


async def accept_tls_client(stream: Stream, context: ssl.SSLContext) -> pg_wire.StartupPacket:
    """Negotiate TLS with a PostgreSQL client and return its StartupMessage, or the
    CancelRequest it sent (with or without TLS first)."""
    packet = await read_startup(stream)
    if packet.kind is pg_wire.StartupKind.GSSENC_REQUEST:
        stream.writer.write(pg_wire.SSL_REFUSE)
        await stream.writer.drain()
        packet = await read_startup(stream)
    if packet.kind is pg_wire.StartupKind.CANCEL_REQUEST:
        return packet  # libpq's PQcancel (psql's Ctrl-C) sends it without TLS
    if packet.kind is pg_wire.StartupKind.STARTUP:
        await send_fatal(stream, TLS_REQUIRED, pg_wire.INVALID_AUTHORIZATION)
        raise UnauthenticatedError("the client did not ask for TLS")
    if packet.kind is not pg_wire.StartupKind.SSL_REQUEST:
        raise ValidationError(f"unexpected {packet.kind.value} before TLS")
    if getattr(stream.reader, "_buffer", b""):
        raise ValidationError("the client sent data after its SSLRequest before TLS")
    stream.writer.write(pg_wire.SSL_ACCEPT)
    await stream.writer.drain()
    try:
        await stream.writer.start_tls(context)
    except (ssl.SSLError, ConnectionError) as error:
        raise UnauthenticatedError(f"TLS handshake failed: {error}") from None
    startup = await read_startup(stream)
    if startup.kind not in (pg_wire.StartupKind.STARTUP, pg_wire.StartupKind.CANCEL_REQUEST):
        raise ValidationError(f"expected a StartupMessage after TLS, got {startup.kind.value}")
    return startup  # asyncpg sends its CancelRequest over TLS

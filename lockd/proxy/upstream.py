"""Dialling the upstream service, and logging in to an upstream PostgreSQL.

The proxy reaches its upstream over TCP (optionally TLS, verified against `ca_file`) or
a Unix socket. For PostgreSQL it then logs in itself, as the listener's configured
`database_user`: the client proved who it is with its certificate, so the upstream
server lets that user in without a password (`trust` on a Unix socket, or `cert`
authentication with the proxy's certificate) or with the password of
`upstream.password_file` by SCRAM-SHA-256 (`pg_scram`). Everything the upstream sends from
AuthenticationOk to ReadyForQuery is handed back, to be forwarded to the client, but its
BackendKeyData: the client gets a cancel key of the proxy's instead.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from lockd.domain.addresses import parse_host_port
from lockd.domain.errors import UnavailableError, ValidationError
from lockd.proxy import pg_scram, pg_wire
from lockd.proxy.proxy_config import UpstreamConfig
from lockd.proxy.relay import Stream, bound_writes

# What the upstream may send from the StartupMessage to ReadyForQuery (parameters, notices).
MAX_LOGIN_BYTES = 1024 * 1024


class UpstreamRefused(UnavailableError):
    """The upstream PostgreSQL answered the login with an ErrorResponse (`raw`, to forward)."""

    def __init__(self, text: str, raw: bytes) -> None:
        super().__init__(text)
        self.raw = raw


def upstream_tls_context(config: UpstreamConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def dial(config: UpstreamConfig, buffer_bytes: int, *, tls_now: bool) -> Stream:
    """Connect to the upstream; `tls_now` starts TLS at once (tcp listeners). PostgreSQL
    negotiates TLS first (`negotiate_tls`)."""
    try:
        if config.unix_socket is not None:
            reader, writer = await asyncio.open_unix_connection(
                str(config.unix_socket), limit=buffer_bytes
            )
        else:
            address = parse_host_port(config.address)
            reader, writer = await asyncio.open_connection(
                address.host,
                address.port,
                limit=buffer_bytes,
                ssl=upstream_tls_context(config) if tls_now else None,
                server_hostname=(config.server_name or address.host) if tls_now else None,
            )
    except OSError as error:
        where = config.unix_socket or config.address
        raise UnavailableError(f"cannot reach the upstream {where}: {error}") from None
    stream = Stream(reader, writer)
    bound_writes(stream, buffer_bytes)
    return stream


async def negotiate_tls(stream: Stream, config: UpstreamConfig) -> None:
    """SSLRequest to the upstream PostgreSQL, then TLS over the same connection."""
    stream.writer.write(pg_wire.encode_ssl_request())
    await stream.writer.drain()
    answer = await stream.reader.readexactly(1)
    if answer != pg_wire.SSL_ACCEPT:
        raise UnavailableError(f"the upstream {config.address} does not accept TLS")
    host = parse_host_port(config.address).host
    await stream.writer.start_tls(
        upstream_tls_context(config), server_hostname=config.server_name or host
    )


def upstream_parameters(
    client: pg_wire.StartupPacket, config: UpstreamConfig
) -> tuple[tuple[str, str], ...]:
    """The client's startup parameters, logged in as the configured user.

    `database` is the configured one, else the client's, else (PostgreSQL's own default)
    the user name. Replication connections are not proxied.
    """
    if client.parameter("replication") not in ("", "false", "off", "no", "0"):
        raise ValidationError("replication connections are not supported by the proxy")
    database = config.database or client.parameter("database") or config.database_user
    kept = tuple(
        (name, value) for name, value in client.parameters if name not in ("user", "database")
    )
    return (("user", config.database_user), ("database", database), *kept)


async def postgres_login(
    stream: Stream,
    client: pg_wire.StartupPacket,
    config: UpstreamConfig,
    client_key: Callable[[bytes], bytes],
) -> bytes:
    """Send the StartupMessage, log in, and read up to ReadyForQuery: the bytes to forward.

    The upstream's BackendKeyData is not forwarded: `client_key(its key)` gives the key
    the client gets instead (`lockd.proxy.cancel_keys`).
    """
    startup = pg_wire.encode_startup(client.protocol, upstream_parameters(client, config))
    stream.writer.write(startup)
    await stream.writer.drain()
    forwarded = bytearray()
    authenticated = False
    scram: pg_scram.ScramClient | None = None
    while len(forwarded) <= MAX_LOGIN_BYTES:
        kind, body = await _read_message(stream)
        if kind == b"R" and not authenticated:
            code = pg_wire.authentication_code(body)
            if code != pg_wire.AUTH_OK:
                # The exchange is the proxy's own; the client sees only AuthenticationOk.
                scram = await _authenticate(stream, code, body, config, scram)
                continue
            if scram is not None:
                raise UnavailableError("the upstream accepted the login before SCRAM ended")
            authenticated = True
        elif kind == pg_wire.BACKEND_KEY_DATA:
            body = client_key(body)
        forwarded += pg_wire.message(kind, body)
        if kind == pg_wire.READY_FOR_QUERY:
            return bytes(forwarded)
    raise UnavailableError("the upstream sent too much before it was ready for queries")


async def _authenticate(
    stream: Stream,
    code: int,
    body: bytes,
    config: UpstreamConfig,
    scram: pg_scram.ScramClient | None,
) -> pg_scram.ScramClient | None:
    """Answer one authentication request; the SCRAM exchange still under way, if any."""
    if code == pg_scram.AUTH_SASL and config.password:
        if pg_scram.MECHANISM not in pg_scram.mechanisms(body):
            offered = ", ".join(pg_scram.mechanisms(body))
            raise UnavailableError(f"the upstream offers no SCRAM-SHA-256 (only {offered})")
        scram = pg_scram.ScramClient(config.password)
        answer = scram.initial_response()
    elif code == pg_scram.AUTH_SASL_CONTINUE and scram is not None:
        answer = scram.final_response(body[4:])
    elif code == pg_scram.AUTH_SASL_FINAL and scram is not None:
        scram.verify(body[4:])
        return None  # AuthenticationOk comes next
    elif config.password:
        raise UnavailableError(
            f"the upstream asks for authentication method {code} for user "
            f'"{config.database_user}"; the proxy speaks SCRAM-SHA-256 only'
        )
    else:
        raise UnavailableError(
            f"the upstream asks for a password (authentication method {code}) for user "
            f'"{config.database_user}"; set upstream.password_file, or let that user in '
            "with trust (Unix socket) or cert authentication"
        )
    stream.writer.write(answer)
    await stream.writer.drain()
    return scram


async def _read_message(stream: Stream) -> tuple[bytes, bytes]:
    """One message of the login (type, body); an ErrorResponse raises UpstreamRefused."""
    header = await stream.reader.readexactly(5)
    kind, length = pg_wire.message_header(header)
    if length > pg_wire.MAX_HANDSHAKE_MESSAGE:
        raise UnavailableError("the upstream sent an oversized message during login")
    body = await stream.reader.readexactly(length)
    if kind == b"E":
        text = pg_wire.parse_error_fields(body).get("M", "the upstream refused the login")
        raise UpstreamRefused(f"upstream: {text}", header + body)
    return kind, body

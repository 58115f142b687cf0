"""SCRAM-SHA-256 against a real PostgreSQL through the proxy, and RFC 7677's own example."""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from lockd.domain.errors import UnavailableError
from lockd.proxy.pg_scram import ScramClient
from lockd.proxy.proxy_config import ListenerConfig, UpstreamConfig
from tests.postgres_server import PASSWORD, SUPERUSER, PostgresDatabase, PostgresServer
from tests.proxy.conftest import StartProxy
from tests.proxy.helpers import Certificates, asyncpg_connect, postgres_listener

# RFC 7677 section 3 (user "user", password "pencil").
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _body(message: bytes) -> bytes:
    assert message[:1] == b"p"
    (length,) = struct.unpack("!i", message[1:5])
    assert length == len(message) - 1
    return message[5:]


def test_the_exchange_matches_rfc_7677s_example() -> None:
    """client-first, client-final (the proof) and the server's signature, byte for byte;
    a wrong server signature or a nonce the server did not extend is refused."""
    client = ScramClient("pencil", user="user", nonce=CLIENT_NONCE)
    initial = _body(client.initial_response())
    assert initial == b"SCRAM-SHA-256\0" + struct.pack("!i", 32) + b"n,,n=user,r=" + (
        CLIENT_NONCE.encode()
    )
    assert _body(client.final_response(SERVER_FIRST)) == CLIENT_FINAL
    client.verify(SERVER_FINAL)
    with pytest.raises(UnavailableError, match="signature is wrong"):
        client.verify(b"v=" + b"A" * 44)
    with pytest.raises(UnavailableError, match="does not extend"):
        ScramClient("pencil", nonce="other").final_response(SERVER_FIRST)


def tcp_listener(server: PostgresServer, name: str, password: str) -> ListenerConfig:
    """A postgres listener whose upstream is the server's TCP port (scram-sha-256)."""
    upstream = UpstreamConfig(
        address=f"127.0.0.1:{server.port}", database_user=SUPERUSER, password=password
    )
    return replace(postgres_listener(Path("/unused")), name=name, upstream=upstream)


async def test_the_proxy_logs_in_upstream_with_scram_and_forwards_a_refusal(
    start_proxy: StartProxy,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
) -> None:
    """Upstream over TCP with scram-sha-256 (the fixture's pg_hba): the right password gets
    asyncpg through; a wrong one gets PostgreSQL's own refusal to the client."""
    alice = await certs.user("alice")
    proxy = await start_proxy(
        tcp_listener(postgres_server, "good", PASSWORD),
        tcp_listener(postgres_server, "bad", "wrong"),
    )
    connection = await asyncpg_connect(proxy.listener("good").port, postgres_db.name, alice)
    try:
        assert await connection.fetchval("SELECT current_user") == SUPERUSER
    finally:
        await connection.close()
    with pytest.raises(asyncpg.InvalidPasswordError, match="password authentication failed"):
        await asyncpg_connect(proxy.listener("bad").port, postgres_db.name, alice)

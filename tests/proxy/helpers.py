"""Helpers of the proxy suite: a cluster CA and its certificates, the proxy, real clients.

Certificates come from `lockd.pki.ClusterCA`, the auth server's own CA code: user
certificates as `lockctl auth sign` issues them (CN user, OU user, O roles), and the
proxy's server certificate for 127.0.0.1. Clients are the real `psql` (run as a
subprocess: the proxy shares the test's event loop, so nothing may block it) and asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import yaml

from lockd.pki import (
    CertIdentity,
    ClusterCA,
    DeviceAttributes,
    IdentityKind,
    cert_pem,
    key_pem,
    new_key,
)
from lockd.proxy.proxy_config import ListenerConfig, ProxyConfig, ProxyTlsConfig, UpstreamConfig
from tests.support import WAIT

PSQL = shutil.which("psql")


@dataclass(frozen=True, slots=True)
class ClientFiles:
    """A key, its certificate and the CA to verify the proxy with (psql's three files)."""

    key: Path
    cert: Path
    ca: Path

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


class Certificates:
    """A cluster CA in `directory`, issuing the proxy's and users' certificates."""

    def __init__(
        self, directory: Path, cluster: str = "proxy.lockd", ca_dir: Path | None = None
    ) -> None:
        """`ca_dir`: a running auth server's data dir, to use its CA (default: a new one)."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        ca_dir = ca_dir or directory / "ca"
        self.ca = ClusterCA.load_or_create(ca_dir, cluster, datetime.now(UTC))
        self.ca_file = ca_dir / "ca.crt"

    def _write(
        self, name: str, kind: IdentityKind, roles: tuple[str, ...], **issue: object
    ) -> ClientFiles:
        key = new_key()
        now = issue.pop("now", datetime.now(UTC))
        assert isinstance(now, datetime)
        ttl = issue.pop("ttl", timedelta(hours=1))
        assert isinstance(ttl, timedelta)
        attributes = issue.pop("attributes", DeviceAttributes())
        assert isinstance(attributes, DeviceAttributes)
        hosts = ("127.0.0.1", "localhost") if kind is IdentityKind.SERVER else ()
        identity = CertIdentity(kind, name, roles, attributes)
        cert = self.ca.issue(key.public_key(), identity, now, ttl, hosts)
        key_path = self.directory / f"{name}.key"
        cert_path = self.directory / f"{name}.crt"
        key_path.write_bytes(key_pem(key))
        os.chmod(key_path, 0o600)  # libpq refuses a key others may read
        cert_path.write_bytes(cert_pem(cert))
        return ClientFiles(key_path, cert_path, self.ca_file)

    # File writes and signing run on a thread: the event loop serves the proxy meanwhile.
    async def server(self) -> ProxyTlsConfig:
        files = await asyncio.to_thread(self._write, "proxy-server", IdentityKind.SERVER, ())
        return ProxyTlsConfig(files.cert, files.key, self.ca_file)

    async def user(
        self,
        name: str,
        roles: tuple[str, ...] = ("dev",),
        attributes: DeviceAttributes | None = None,
    ) -> ClientFiles:
        """A user certificate, naming `attributes` (MFA device, device, access requests)."""
        return await asyncio.to_thread(
            self._write,
            name,
            IdentityKind.USER,
            roles,
            attributes=attributes or DeviceAttributes(),
        )

    async def expired_user(self, name: str) -> ClientFiles:
        past = datetime.now(UTC) - timedelta(days=2)
        return await asyncio.to_thread(
            self._write, name, IdentityKind.USER, ("dev",), now=past, ttl=timedelta(hours=1)
        )


def postgres_listener(
    socket: Path, database_user: str = "postgres", **limits: object
) -> ListenerConfig:
    listener = ListenerConfig(
        name="pg",
        protocol="postgres",
        listen_addr="127.0.0.1:0",
        upstream=UpstreamConfig(unix_socket=socket, database_user=database_user),
    )
    return replace(listener, **limits)  # type: ignore[arg-type]


def proxy_config(
    agent_socket: Path, tls: ProxyTlsConfig, *listeners: ListenerConfig, **settings: object
) -> ProxyConfig:
    config = ProxyConfig(agent_socket=agent_socket, tls=tls, listeners=listeners)
    return replace(config, **settings)  # type: ignore[arg-type]


def write_proxy_yaml(
    path: Path, agent_socket: Path, tls: ProxyTlsConfig, port: int, upstream_socket: Path
) -> Path:
    """The proxy config docs/proxy.md shows: one postgres listener on 127.0.0.1:`port`."""
    settings = {
        "agent_socket": str(agent_socket),
        "tls": {
            "cert_file": str(tls.cert_file),
            "key_file": str(tls.key_file),
            "client_ca_file": str(tls.client_ca_file),
        },
        "log": {"format": "json"},
        "shutdown_timeout": "2s",
        "listeners": [
            {
                "name": "app-db",
                "protocol": "postgres",
                "listen_addr": f"127.0.0.1:{port}",
                "upstream": {"unix_socket": str(upstream_socket), "database_user": "postgres"},
            }
        ],
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def conninfo(port: int, database: str, files: ClientFiles | None, user: str = "alice") -> str:
    """A libpq connection string for the proxy, verifying it against the cluster CA."""
    parts = [f"host=127.0.0.1 port={port} dbname={database} user={user} connect_timeout=20"]
    if files is None:
        parts.append("sslmode=require")
    else:
        parts.append(
            f"sslmode=verify-full sslcert={files.cert} sslkey={files.key} sslrootcert={files.ca}"
        )
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class PsqlResult:
    code: int
    stdout: str
    stderr: str


async def psql(info: str, sql: str) -> PsqlResult:
    """Run the real psql client against `info`; its exit code and output."""
    assert PSQL is not None
    process = await start_psql(info, sql)
    async with asyncio.timeout(WAIT * 2):
        out, err = await process.communicate()
    assert process.returncode is not None
    return PsqlResult(process.returncode, out.decode(), err.decode())


async def start_psql(info: str, sql: str) -> asyncio.subprocess.Process:
    assert PSQL is not None
    return await asyncio.create_subprocess_exec(
        PSQL,
        "-X",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
        info,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def asyncpg_connect(
    port: int, database: str, files: ClientFiles, user: str = "alice"
) -> asyncpg.Connection:
    context = await asyncio.to_thread(files.ssl_context)
    connection: asyncpg.Connection = await asyncpg.connect(
        host="127.0.0.1",
        port=port,
        user=user,
        database=database,
        ssl=context,
        timeout=WAIT,
    )
    return connection


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def loopback_server(serve: Handler) -> AsyncIterator[int]:
    """An upstream on a free 127.0.0.1 port running `serve` per connection; its port.
    Every connection it accepted is closed at the end, whatever `serve` left open."""
    held: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await serve(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

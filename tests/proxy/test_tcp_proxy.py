"""TCP through `lockd proxy`: mTLS at the proxy, plain TCP to the upstream, bounded memory.

The upstreams are small asyncio servers in the test: one echoes, one accepts and never
reads (a stalled service), so a client flooding into it shows what the proxy buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import replace
from datetime import timedelta

from prometheus_client import CollectorRegistry

from lockd.domain.lock import Lock, LockTarget
from lockd.proxy.proxy_config import ListenerConfig, UpstreamConfig
from lockd.proxy.proxy_service import ProxyService
from tests.agent.helpers import Cluster
from tests.proxy.conftest import StartProxy
from tests.proxy.helpers import Certificates, ClientFiles, loopback_server
from tests.support import WAIT, eventually

BUFFER = 16 * 1024
TLS_READ = 256 * 1024  # asyncio's sslproto reads at most this much at a time


def tcp_listener(port: int) -> ListenerConfig:
    return ListenerConfig(
        name="tcp",
        protocol="tcp",
        listen_addr="127.0.0.1:0",
        upstream=UpstreamConfig(address=f"127.0.0.1:{port}"),
        buffer_bytes=BUFFER,
    )


def upstream(echo: bool) -> contextlib.AbstractAsyncContextManager[int]:
    """An upstream on a free port: an echo server, or one that never reads."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not echo:
            return  # the connection stays open and unread: a stalled service
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    return loopback_server(serve)


async def connect(
    proxy: ProxyService, files: ClientFiles
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = await asyncio.to_thread(files.ssl_context)
    return await asyncio.open_connection(
        "127.0.0.1", proxy.listener("tcp").port, ssl=context, server_hostname="127.0.0.1"
    )


async def test_a_tcp_client_with_a_cluster_certificate_reaches_the_upstream_until_locked(
    start_proxy: StartProxy, cluster: Cluster, certs: Certificates
) -> None:
    """Bytes go both ways; a user lock closes the connection; a new one is refused."""
    async with upstream(echo=True) as port:
        proxy = await start_proxy(tcp_listener(port))
        alice = await certs.user("alice")
        reader, writer = await connect(proxy, alice)
        writer.write(b"ping")
        await writer.drain()
        assert await reader.readexactly(4) == b"ping"
        await cluster.auth.client().create_lock(Lock("l1", LockTarget(user="alice")))
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        writer.close()
        reader, writer = await connect(proxy, alice)
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""  # refused after TLS: closed at once
        writer.close()


async def test_a_client_flooding_a_stalled_upstream_is_held_to_bounded_buffers(
    start_proxy: StartProxy, certs: Certificates, registry: CollectorRegistry
) -> None:
    """Back-pressure: the proxy stops reading once its bounded buffers are full, so the
    client's own writes stall; what the proxy holds stays a few buffer sizes."""
    async with upstream(echo=False) as port:
        proxy = await start_proxy(tcp_listener(port))
        _, writer = await connect(proxy, await certs.user("alice"))
        sent = 0

        async def flood() -> None:
            nonlocal sent
            block = b"x" * 65536
            while sent < 512 * 1024 * 1024:
                writer.write(block)
                await writer.drain()
                sent += len(block)

        flooding = asyncio.create_task(flood())
        samples: list[int] = []

        def stalled() -> bool:
            samples.append(sent)
            return len(samples) > 10 and samples[-1] == samples[-10] > 0

        await eventually(stalled, interval=0.1, what="the client's writes to stall")
        (connection,) = proxy.listener("tcp").connections
        assert connection.relay is not None
        # Per side: the reader's buffer (paused past twice its limit; asyncio's TLS layer
        # may add one decrypted read of up to 256 KiB before the pause), a chunk, the
        # write high-water mark. Never the megabytes the client tried to push.
        assert connection.relay.buffered_bytes() <= TLS_READ + 8 * BUFFER
        assert not flooding.done()
        flooding.cancel()
        writer.transport.abort()


async def test_a_tcp_client_without_a_certificate_never_reaches_the_upstream(
    start_proxy: StartProxy, registry: CollectorRegistry
) -> None:
    """TLS without a client certificate fails at the handshake."""
    async with upstream(echo=True) as port:
        proxy = await start_proxy(tcp_listener(port))
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            # TLS 1.3: the client may finish its side before the proxy's alert arrives.
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", proxy.listener("tcp").port, ssl=context
            )
            try:
                async with asyncio.timeout(WAIT):
                    assert await reader.read() == b""
            finally:
                writer.transport.abort()
        await eventually(
            lambda: (
                registry.get_sample_value(
                    "lockd_proxy_connections_total", {"protocol": "tcp", "result": "tls_failed"}
                )
                == 1
            ),
            what="one handshake failure",
        )


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    start_proxy: StartProxy, certs: Certificates
) -> None:
    """No byte either way for idle_timeout (1 s here): the proxy closes the connection."""
    async with upstream(echo=True) as port:
        listener = replace(tcp_listener(port), idle_timeout=timedelta(seconds=1))
        proxy = await start_proxy(listener)
        reader, writer = await connect(proxy, await certs.user("alice"))
        writer.write(b"ping")
        await writer.drain()
        assert await reader.readexactly(4) == b"ping"
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        writer.close()

"""HTTP through `lockd proxy`: the real curl with a cluster certificate, a small web app.

The upstream is an asyncio HTTP/1.1 server in the test: `/stream` answers with a chunked
response that never ends (a long-lived connection), every other path with a short body.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil

import pytest

from lockd.domain.lock import Lock, LockTarget
from lockd.proxy.proxy_config import ListenerConfig, UpstreamConfig
from tests.agent.helpers import Cluster
from tests.proxy.conftest import StartProxy
from tests.proxy.helpers import Certificates, ClientFiles, loopback_server
from tests.proxy.test_postgres_proxy import sessions_on_agent
from tests.support import WAIT, eventually

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")
LOCK_MESSAGE = 'lock targeting User:"alice" is in force: Suspicious activity.'


def web_app() -> contextlib.AbstractAsyncContextManager[int]:
    """An HTTP/1.1 upstream on a free port (keep-alive; `/stream` never ends)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ")[1].decode()
                if path == "/stream":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    writer.write(b"6\r\nfirst\n\r\n")
                    await writer.drain()
                    await reader.read()  # held open until the proxy closes it
                    return
                body = f"hello {path}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()

    return loopback_server(serve)


def http_listener(port: int) -> ListenerConfig:
    return ListenerConfig(
        name="web",
        protocol="http",
        listen_addr="127.0.0.1:0",
        upstream=UpstreamConfig(address=f"127.0.0.1:{port}"),
    )


async def start_curl(files: ClientFiles, url: str) -> asyncio.subprocess.Process:
    assert CURL is not None
    return await asyncio.create_subprocess_exec(
        CURL,
        "--silent",
        "--no-buffer",
        "--cacert",
        str(files.ca),
        "--cert",
        str(files.cert),
        "--key",
        str(files.key),
        "--write-out",
        "\n%{http_code}",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def curl(files: ClientFiles, url: str) -> tuple[str, str]:
    """(body, status) of one request with the real curl."""
    process = await start_curl(files, url)
    async with asyncio.timeout(WAIT):
        out, _ = await process.communicate()
    body, _, status = out.decode().rpartition("\n")
    return body, status


async def lock_alice(cluster: Cluster) -> None:
    lock = Lock("l1", LockTarget(user="alice"), message="Suspicious activity.")
    await cluster.auth.client().create_lock(lock)


async def test_requests_pass_with_a_certificate_and_a_locked_user_gets_403_and_the_message(
    start_proxy: StartProxy, cluster: Cluster, certs: Certificates
) -> None:
    """curl through the proxy reaches the app; once alice is locked her next request is
    answered 403 with the lock's message as the body, and bob's still passes."""
    async with web_app() as port:
        proxy = await start_proxy(http_listener(port))
        url = f"https://127.0.0.1:{proxy.listener('web').port}"
        alice, bob = await certs.user("alice"), await certs.user("bob")
        assert await curl(alice, f"{url}/hello") == ("hello /hello", "200")
        await lock_alice(cluster)
        await cluster.agents[-1].wait_revision(cluster.auth.revision)
        assert await curl(alice, f"{url}/again") == (LOCK_MESSAGE + "\n", "403")
        assert await curl(bob, f"{url}/bob") == ("hello /bob", "200")
        audit = cluster.agents[-1].audit  # written just after the agent answers
        await eventually(lambda: audit.of("session.start"), what="a session.start")
        assert audit.of("session.start")[0].fields["protocol"] == "app"


async def test_a_lock_closes_a_live_streaming_response(
    start_proxy: StartProxy, cluster: Cluster, certs: Certificates
) -> None:
    """A response that never ends (long-lived connection) is cut when the lock arrives."""
    async with web_app() as port:
        proxy = await start_proxy(http_listener(port))
        url = f"https://127.0.0.1:{proxy.listener('web').port}/stream"
        process = await start_curl(await certs.user("alice"), url)
        try:
            assert process.stdout is not None
            async with asyncio.timeout(WAIT):
                assert await process.stdout.readline() == b"first\n"
            await sessions_on_agent(cluster, 1)
            await lock_alice(cluster)
            async with asyncio.timeout(WAIT):
                await process.wait()
            assert process.returncode != 0  # the transfer ended unfinished
            await sessions_on_agent(cluster, 0)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

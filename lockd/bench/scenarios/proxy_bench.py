"""`proxy`: PostgreSQL connections through `lockd proxy`, cut off by a lock; relay throughput.

Real processes: a throwaway PostgreSQL, `lockd auth`, `lockd agent`, `lockd proxy`; the
clients are asyncpg connections in this process with certificates from a CA made here.

- **termination**: each round opens `--connections` idle connections of one user through
  the proxy, creates a lock on that user and times, for every connection, CreateLock's
  return (the lock is committed and on its way to the agent) → the client seeing its
  connection closed. The agent applies the lock within about a millisecond of its commit
  (see `lockd bench propagation`), so this is close to "lock event at the agent → hit
  connection closed", with the fan-out included.
- **throughput**: one connection, `COPY (SELECT … generate_series) TO STDOUT` of
  `--copy-mb` MiB, directly over TCP and through the proxy (TLS to the proxy, Unix socket
  to the server), best of `--copy-runs`; the ratio is the proxy's share of a direct one.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from lockd.bench.authproc import AuthServer
from lockd.bench.pgserver import PostgresServer, discard, free_port, start_throwaway
from lockd.bench.procs import Reaper, rss_bytes
from lockd.bench.report import Result, latency_summary, mb
from lockd.bench.scenarios.common import Common, start_auth
from lockd.client import AgentClient
from lockd.domain.errors import LockdError
from lockd.domain.lock import Lock, LockTarget
from lockd.pki import CertIdentity, ClusterCA, IdentityKind, cert_pem, key_pem, new_key

START_TIMEOUT = 120.0
ROW_BYTES = 100  # the COPY rows: an int and 90 characters, about 100 bytes a line


@dataclass(frozen=True, slots=True)
class ProxyParams:
    connections: int = 1000
    rounds: int = 3
    copy_mb: int = 200
    copy_runs: int = 3


@dataclass(frozen=True, slots=True)
class Files:
    key: Path
    cert: Path


def _issue(ca: ClusterCA, directory: Path, name: str, kind: IdentityKind) -> Files:
    key = new_key()
    hosts = ("127.0.0.1",) if kind is IdentityKind.SERVER else ()
    identity = CertIdentity(kind, name, ("bench",) if kind is IdentityKind.USER else ())
    cert = ca.issue(key.public_key(), identity, datetime.now(UTC), timedelta(hours=4), hosts)
    files = Files(directory / f"{name}.key", directory / f"{name}.crt")
    files.key.write_bytes(key_pem(key))
    os.chmod(files.key, 0o600)
    files.cert.write_bytes(cert_pem(cert))
    return files


def _start_postgres(connections: int) -> PostgresServer:
    server = start_throwaway(fsync=False)
    try:
        server.psql(f"ALTER SYSTEM SET max_connections = {connections + 50}")
        server.restart()
    except BaseException:
        discard(server)
        raise
    return server


async def _wait_synced(socket: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if await asyncio.to_thread(socket.exists):
            try:
                async with AgentClient.connect(socket) as agent:
                    if (await agent.status()).state == "synced":
                        return
            except LockdError:
                pass  # not serving yet
        if time.monotonic() > deadline:
            raise RuntimeError("lockd agent did not sync in time")
        await asyncio.sleep(0.1)


class ProxyStack:
    """The processes of one run; `close()` stops them all."""

    def __init__(self, reaper: Reaper) -> None:
        self.reaper = reaper
        self.directory = reaper.workdir / "proxy"
        self.directory.mkdir()
        self.postgres: PostgresServer | None = None
        self.proxy_pid = 0
        self.proxy_port = 0
        self.context: ssl.SSLContext | None = None

    def _spawn(self, name: str, *args: str) -> int:
        with (self.directory / f"{name}.log").open("wb") as log:
            process = self.reaper.popen(
                [sys.executable, "-m", "lockd.bench.launch", "lockd", *args],
                stdout=log,
                stderr=log,
            )
        return process.pid

    async def start(self, auth_address: str, connections: int) -> None:
        directory = self.directory
        self.postgres = await asyncio.to_thread(_start_postgres, connections)
        agent_socket = directory / "agent.sock"
        (directory / "agent.yaml").write_text(
            f"""\
cluster_name: bench.lockd
data_dir: {directory / "agent"}
log: {{format: json, level: warning}}
agent_service:
  enabled: true
  insecure: true
  auth_servers: ["{auth_address}"]
  socket: {agent_socket}
  metrics_addr: ""
""",
            encoding="utf-8",
        )
        self._spawn("agent", "agent", "--config", str(directory / "agent.yaml"))
        await _wait_synced(agent_socket)
        ca = await asyncio.to_thread(
            ClusterCA.load_or_create, directory / "ca", "bench.lockd", datetime.now(UTC)
        )
        server = await asyncio.to_thread(_issue, ca, directory, "proxy", IdentityKind.SERVER)
        user = await asyncio.to_thread(_issue, ca, directory, "bench", IdentityKind.USER)
        self.proxy_port = free_port()
        socket = self.postgres.socket_dir / f".s.PGSQL.{self.postgres.port}"
        (directory / "proxy.yaml").write_text(
            f"""\
agent_socket: {agent_socket}
log: {{format: json, level: warning}}
tls:
  cert_file: {server.cert}
  key_file: {server.key}
  client_ca_file: {directory / "ca" / "ca.crt"}
listeners:
  - name: bench
    protocol: postgres
    listen_addr: 127.0.0.1:{self.proxy_port}
    max_connections: {connections + 10}
    upstream: {{unix_socket: {socket}, database_user: postgres}}
""",
            encoding="utf-8",
        )
        self.proxy_pid = self._spawn("proxy", "proxy", "--config", str(directory / "proxy.yaml"))
        context = ssl.create_default_context(cafile=str(directory / "ca" / "ca.crt"))
        await asyncio.to_thread(context.load_cert_chain, str(user.cert), str(user.key))
        self.context = context
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                await (await self.connect("bench-probe")).close()
                return
            except (OSError, asyncpg.PostgresError) as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"lockd proxy did not start: {error}") from None
                await asyncio.sleep(0.2)

    async def connect(self, user: str) -> asyncpg.Connection:
        """A connection through the proxy. The certificate names the user `bench`; the
        StartupMessage's user is what the proxy ignores, so rounds lock `bench`'s role."""
        connection: asyncpg.Connection = await asyncpg.connect(
            host="127.0.0.1",
            port=self.proxy_port,
            user=user,
            database="postgres",
            ssl=self.context,
            timeout=60,
        )
        return connection

    async def close(self) -> None:
        if self.postgres is not None:
            await asyncio.to_thread(discard, self.postgres)
            self.postgres = None


async def _open_many(stack: ProxyStack, count: int) -> list[asyncpg.Connection]:
    connections: list[asyncpg.Connection] = []
    for start in range(0, count, 50):  # in batches: 1,000 TLS handshakes at once time out
        batch = [stack.connect("bench") for _ in range(min(50, count - start))]
        connections.extend(await asyncio.gather(*batch))
    return connections


async def _round(stack: ProxyStack, auth: AuthServer, count: int, index: int) -> list[float]:
    """N idle connections of the user, a lock on it: each connection's time to close."""
    loop = asyncio.get_running_loop()
    connections = await _open_many(stack, count)
    closed: list[float] = []
    all_closed = loop.create_future()

    def on_close(_: object) -> None:
        closed.append(loop.time())
        if len(closed) == count and not all_closed.done():
            all_closed.set_result(None)

    for connection in connections:
        connection.add_termination_listener(on_close)
    name = f"bench-proxy-{index}"
    await auth.admin().create_lock(Lock(name, LockTarget(user="bench")))
    committed = loop.time()
    try:
        async with asyncio.timeout(60):
            await all_closed
    finally:
        for connection in connections:
            connection.terminate()
        await auth.admin().delete_lock(name)
    await _until_allowed(stack)
    return [at - committed for at in closed]


async def _until_allowed(stack: ProxyStack) -> None:
    """Until the agent has applied the lock's deletion (a new connection gets in)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            await (await stack.connect("bench")).close()
            return
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "connections stayed refused after the lock was deleted"
                ) from None
            await asyncio.sleep(0.05)


# asyncpg's copy_from_query wraps it in COPY (...) TO STDOUT.
COPY_QUERY = "SELECT n, repeat('x', 90) FROM generate_series(1, {rows}) AS n"


async def _copy_rate(connection: asyncpg.Connection, size: int, runs: int) -> float:
    """Best MiB/s of `runs` COPY TO STDOUT of about `size` bytes, received and dropped."""
    received = 0

    async def sink(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)

    best = 0.0
    query = COPY_QUERY.format(rows=size // ROW_BYTES)
    for _ in range(runs):
        received = 0
        started = time.monotonic()
        await connection.copy_from_query(query, output=sink)
        best = max(best, received / (1 << 20) / (time.monotonic() - started))
    return best


async def proxy(reaper: Reaper, params: ProxyParams, common: Common) -> Result:
    result = Result(
        "proxy",
        {
            "connections": params.connections,
            "rounds": params.rounds,
            "copy_mb": params.copy_mb,
            "store": common.store,
        },
    )
    auth = await start_auth(reaper, common)
    stack = ProxyStack(reaper)
    try:
        await stack.start(auth.address, params.connections)
        latencies: list[float] = []
        for index in range(params.rounds):
            latencies.extend(await _round(stack, auth, params.connections, index))
        result.update(latency_summary("lock_to_closed", latencies))
        # The machine's 1-minute load average as the rounds end: figures from a loaded
        # box are only comparable with their load next to them.
        result.add(
            proxy_rss_mb=mb(rss_bytes(stack.proxy_pid)), load_1m=round(os.getloadavg()[0], 2)
        )
        assert stack.postgres is not None
        direct = await asyncpg.connect(stack.postgres.dsn(), timeout=60)
        through = await stack.connect("bench")
        try:
            size = params.copy_mb << 20
            direct_rate = await _copy_rate(direct, size, params.copy_runs)
            proxy_rate = await _copy_rate(through, size, params.copy_runs)
        finally:
            await direct.close()
            await through.close()
        result.add(
            copy_direct_mib_per_s=round(direct_rate, 1),
            copy_proxy_mib_per_s=round(proxy_rate, 1),
            copy_proxy_vs_direct=round(proxy_rate / direct_rate, 3) if direct_rate else None,
        )
        result.notes.append(
            "lock_to_closed: CreateLock returned -> asyncpg sees the connection closed, "
            "every connection of every round; copy: best of runs, direct = TCP without TLS"
        )
    finally:
        await stack.close()
        await auth.close()
    return result

"""The auth server under test: a real `lockd auth` subprocess on loopback.

It runs `python -m lockd auth --config FILE` (through `lockd.bench.launch`) with
a config written into the run's temporary directory: plaintext gRPC on 127.0.0.1
(`auth_service.insecure: true`; the benchmark measures lockd, not TLS), the chosen
store (postgres: a throwaway server of `lockd.bench.pgserver`), metrics off,
warnings-only logs to a file. The coordinator talks to it over its
admin socket. A restart reuses the same config and data directory, so a SQLite store
keeps its epoch and log across it.
"""

from __future__ import annotations

import asyncio
import atexit
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.bench.pgserver import PostgresServer, discard, start_throwaway
from lockd.bench.procs import Reaper, cpu_seconds, interrupted, rss_bytes
from lockd.client import AuthClient
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.ports import PutMode
from lockd.store import sqlite_ops

START_TIMEOUT = 60.0
POSTGRES_DATABASE = "lockd"
SEED_CONCURRENCY = 32


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed_lock(index: int) -> Lock:
    """A lock that hits nobody the benchmark's agents or sessions use."""
    return Lock(f"seed-{index:06d}", LockTarget(user=f"seed-user-{index}"), message="bench seed")


def start_postgres() -> PostgresServer:
    """A throwaway PostgreSQL with fsync on (commits cost what they cost in production)
    and an empty database for lockd; removed at exit even when the run is interrupted."""
    server = start_throwaway(fsync=True)
    atexit.register(discard, server)
    server.psql(f'CREATE DATABASE "{POSTGRES_DATABASE}"')
    return server


class AuthServer:
    """One `lockd auth` process (restartable) and a client on its admin socket."""

    def __init__(
        self,
        reaper: Reaper,
        store: str,
        heartbeat: str = "5s",
        postgres: PostgresServer | None = None,
        name: str = "auth",
        watch_workers: int = 1,
    ) -> None:
        """`name`: its directory in the run's (replicas on one database need one each)."""
        self._reaper = reaper
        self.store = store
        self.postgres = postgres  # the store's server when store is "postgres"
        self.directory = _fresh_directory(reaper.workdir, name)
        self.admin_socket = self.directory / "admin.sock"
        self.db_path = self.directory / "lockd.db"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.config = self.directory / "lockd.yaml"
        self.config.write_text(
            f"""\
cluster_name: bench.lockd
data_dir: {self.directory}
log:
  format: json
  level: warning
audit:
  sink: {self.directory / "audit.log"}
auth_service:
  enabled: true
  insecure: true
  listen_addr: {self.address}
  admin_socket: {self.admin_socket}
  metrics_addr: ""
  heartbeat_interval: {heartbeat}
  watch_workers: {watch_workers}
  storage:
    type: {store}
    path: {self.db_path}
{self._postgres_keys()}""",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self.client: AuthClient | None = None

    def _postgres_keys(self) -> str:
        if self.postgres is None:
            return ""
        # Plaintext on loopback, like the gRPC side: the benchmark measures lockd, not TLS.
        return f"    dsn: {self.postgres.dsn(POSTGRES_DATABASE)}\n    sslmode: disable\n"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stderr_tail(self, lines: int = 15) -> str:
        path = self.directory / f"stderr-{self._starts}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def start(self) -> float:
        """Start the daemon and wait until it is SERVING; returns the monotonic time."""
        self._starts += 1
        stderr = self.directory / f"stderr-{self._starts}.log"
        with stderr.open("wb") as err:
            self.process = self._reaper.popen(
                [
                    sys.executable,
                    "-m",
                    "lockd.bench.launch",
                    "lockd",
                    "auth",
                    "--config",
                    str(self.config),
                ],
                stdout=err,
                stderr=err,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not await self._serving():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"lockd auth exited with status {self.process.returncode}:\n"
                    + self.stderr_tail()
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"lockd auth did not start in {START_TIMEOUT:g}s")
            await asyncio.sleep(0.02)
        ready = time.monotonic()
        if self.client is None:
            self.client = AuthClient.connect(f"unix:{self.admin_socket}")
        return ready

    async def _serving(self) -> bool:
        if not self.admin_socket.exists():
            return False
        async with grpc.aio.insecure_channel(f"unix:{self.admin_socket}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            except grpc.aio.AioRpcError:
                return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float = 30.0) -> None:
        """SIGTERM (graceful: every stream gets Reset(shutdown)) and wait for the exit."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        if interrupted():
            process.kill()
        else:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
            await asyncio.sleep(0.01)
        self._reaper.forget(process.pid)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        await self.stop()
        if self.postgres is not None:
            await asyncio.to_thread(discard, self.postgres)
            self.postgres = None

    def admin(self) -> AuthClient:
        assert self.client is not None, "the auth server is not started"
        return self.client

    # -- seeding -------------------------------------------------------------------------

    def seed_sqlite(self, count: int) -> None:
        """Write `count` locks into the (not yet started) SQLite store, fast (no fsync)."""
        conn = sqlite_ops.connect(self.db_path, 5.0, sqlite3.Connection)
        try:
            conn.execute("PRAGMA synchronous=OFF")
            now = datetime.now(UTC)
            for index in range(count):
                lock = replace(seed_lock(index), created_at=now, created_by="bench")
                sqlite_ops.put(conn, lock, PutMode.CREATE, now)
        finally:
            conn.close()

    async def seed_rpc(self, count: int) -> None:
        """Create `count` locks through the API (memory store), some in flight at once."""
        client = self.admin()
        queue = iter(range(count))

        async def feed() -> None:
            for index in queue:
                await client.upsert_lock(seed_lock(index))

        await asyncio.gather(*(feed() for _ in range(SEED_CONCURRENCY)))


def _fresh_directory(parent: Path, name: str) -> Path:
    """`parent/name`, created; `name-2`, `name-3`… when an earlier server of the same run
    had it (one invocation may start several, e.g. `lockd bench targets`)."""
    directory, number = parent / name, 1
    while True:
        try:
            directory.mkdir()
        except FileExistsError:
            number += 1
            directory = parent / f"{name}-{number}"
            continue
        return directory

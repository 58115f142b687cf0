"""Running a real `lockd auth` and a real `lockctl` as subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from lockd.client import AuthClient, ClusterStatus, ServerUnreachableError
from lockd.domain.resources import ClusterAuthPreference
from tests.support import free_port

T = TypeVar("T")

BIN = Path(sys.executable).parent
LOCKCTL = str(BIN / "lockctl")
LOCKD = str(BIN / "lockd")
START_TIMEOUT = 20.0


def write_config(
    directory: Path,
    port: int,
    cluster_name: str = "lockctl.test",
    locking_mode: str = "",
    join_port: int | None = None,
) -> Path:
    """A `lockd auth` config; plaintext (`insecure: true`) unless a join port is given,
    which makes it a TLS cluster (mTLS on `port`, the join port for agents)."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    admin = data / "admin.sock"
    assert len(str(admin)) < 100, f"Unix socket path too long: {admin}"
    config = directory / "lockd.yaml"
    config.write_text(
        f"cluster_name: {cluster_name}\n"
        f"data_dir: {data}\n"
        "log: {format: json, level: warning}\n"
        "audit: {sink: stderr}\n"
        "auth_service:\n"
        "  enabled: true\n"
        f"  listen_addr: 127.0.0.1:{port}\n"
        "  metrics_addr: ''\n"
        "  storage: {type: sqlite}\n"
        "  heartbeat_interval: 200ms\n"
        + (
            "  insecure: true\n"  # plaintext TCP for the fake agents (loopback only)
            if join_port is None
            else f"  join_listen_addr: 127.0.0.1:{join_port}\n"
        )
        + (f"  authentication: {{locking_mode: {locking_mode}}}\n" if locking_mode else ""),
        encoding="utf-8",
    )
    return config


@dataclass
class AuthServer:
    """A `lockd auth --config FILE` subprocess."""

    config: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    join_port: int | None = None  # a TLS cluster's join port; None: plaintext (insecure)

    @property
    def admin_socket(self) -> Path:
        return self.config.parent / "data" / "admin.sock"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def join_address(self) -> str:
        return f"127.0.0.1:{self.join_port}"

    def client_call(self, work: Callable[[AuthClient], Awaitable[T]]) -> T:
        """Run `await work(client)` on a fresh AuthClient to the admin socket."""

        async def go() -> T:
            async with AuthClient.connect(f"unix:{self.admin_socket}") as client:
                return await work(client)

        return asyncio.run(go())

    def status(self) -> ClusterStatus:
        return self.client_call(lambda client: client.status())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_auth_server(
    directory: Path, cluster_name: str = "lockctl.test", locking_mode: str = "", tls: bool = False
) -> AuthServer:
    """`tls`: a TLS cluster (the default config, without `insecure: true`)."""
    port = free_port()
    join_port = free_port() if tls else None
    config = write_config(directory, port, cluster_name, locking_mode, join_port)
    log = directory / "lockd.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [LOCKD, "auth", "--config", str(config)], stdout=sink, stderr=subprocess.STDOUT
        )
    server = AuthServer(config, port, process, log, join_port)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"lockd auth exited {process.returncode}: {log.read_text()}")
        try:
            if server.client_call(lambda client: client.ping(1.0)):
                return server
        except ServerUnreachableError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"lockd auth did not answer in time: {log.read_text()}")
        time.sleep(0.05)


def reset(server: AuthServer) -> None:
    """Delete every lock, role and user and reset the locking mode: tests start clean."""

    async def work(client: AuthClient) -> None:
        for lock in await client.list_locks():
            await client.delete_lock(lock.name)
        for user in await client.list_users():
            await client.delete_user(user.name)
        for role in await client.list_roles():
            await client.delete_role(role.name)
        await client.set_cluster_auth_preference(ClusterAuthPreference())

    server.client_call(work)


def lockctl(
    server: AuthServer | Path | None,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `lockctl -c CONFIG ARGS...` (no -c when `server` is None).

    Under test, gRPC core logs stay off (as lockctl sets them by default) whatever the
    environment says, so stderr is lockctl's own."""
    config = server.config if isinstance(server, AuthServer) else server
    prefix = ["-c", str(config)] if config is not None else []
    environment = {key: value for key, value in os.environ.items() if key != "LOCKD_CONFIG"}
    environment.pop("GRPC_VERBOSITY", None)
    environment.update(env or {})
    return subprocess.run(
        [LOCKCTL, *prefix, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )


def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def remote(
    server: AuthServer, identity: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `lockctl --auth-server=ADDRESS --identity=FILE ARGS...` (mTLS, no config)."""
    return lockctl(
        None, f"--auth-server={server.address}", f"--identity={identity}", *args, timeout=timeout
    )


@dataclass
class Agent:
    """A real `lockd agent --config FILE` subprocess."""

    config: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_agent(directory: Path, agent_service: str, server_id: str) -> Agent:
    """Start `lockd agent` with the given `agent_service:` YAML block (as `lockctl tokens
    add` prints it) plus a data dir, a server_id and no metrics port."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    assert len(str(data / "agent.sock")) < 100, f"Unix socket path too long: {data}"
    config = directory / "agent.yaml"
    config.write_text(
        "cluster_name: lockctl.test\n"
        f"data_dir: {data}\n"
        "log: {format: json, level: info}\n"
        "audit: {sink: stderr}\n"
        + agent_service.rstrip("\n")
        + "\n"
        + f"  server_id: {server_id}\n"
        + "  metrics_addr: ''\n",
        encoding="utf-8",
    )
    log = directory / "agent.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [LOCKD, "agent", "--config", str(config)], stdout=sink, stderr=subprocess.STDOUT
        )
    return Agent(config, process, log)

"""Real `lockd auth` and `lockd agent` processes for the crash and freeze tests.

Each daemon runs from its own YAML config in a temp directory (plaintext on loopback,
`insecure: true`), logs to a file, and can be killed with SIGKILL, frozen with SIGSTOP
and thawed with SIGCONT. `Daemons.close()` thaws and kills whatever is still running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lockd.client import AgentClient, AuthClient
from tests.support import eventually, free_port

LOCKD = str(Path(sys.executable).parent / "lockd")
CLUSTER = "daemons.test"


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    directory: Path
    log: Path

    def kill(self) -> None:
        """SIGKILL: no clean stop, nothing flushed."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=30)

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@dataclass
class AuthDaemon(Daemon):
    port: int = 0
    admin_socket: Path = Path()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def admin(self) -> AuthClient:
        return AuthClient.connect(str(self.admin_socket))


@dataclass
class AgentDaemon(Daemon):
    socket: Path = Path()
    data_dir: Path = Path()


@dataclass
class Daemons:
    directory: Path
    sockets: Path
    started: list[Daemon] = field(default_factory=list)

    def _spawn(self, command: str, directory: Path, config: str) -> tuple[Popen, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "lockd.yaml"
        path.write_text(config, encoding="utf-8")
        log = directory / "lockd.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [LOCKD, command, "--config", str(path)], stdout=sink, stderr=subprocess.STDOUT
            )
        return process, log

    async def auth(
        self, name: str = "auth", *, strict: bool = False, heartbeat: str = "200ms"
    ) -> AuthDaemon:
        """A `lockd auth` on a fresh port, once its admin socket answers."""
        directory = self.directory / name
        port = free_port()
        admin = self.sockets / f"{name}-admin.sock"
        mode = "  authentication: {locking_mode: strict}\n" if strict else ""
        config = (
            f"cluster_name: {CLUSTER}\n"
            f"data_dir: {directory / 'data'}\n"
            "log: {format: json, level: info}\n"
            "auth_service:\n"
            "  enabled: true\n"
            "  insecure: true\n"
            f"  listen_addr: 127.0.0.1:{port}\n"
            f"  admin_socket: {admin}\n"
            "  metrics_addr: ''\n"
            f"  heartbeat_interval: {heartbeat}\n" + mode
        )
        process, log = self._spawn("auth", directory, config)
        daemon = AuthDaemon(process, directory, log, port, admin)
        self.started.append(daemon)

        async def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"lockd auth exited: {log.read_text()[-2000:]}")
            async with daemon.admin() as client:
                try:
                    return await client.ping(1.0)
                except Exception:
                    return False

        await eventually(answers, what=f"{name} to answer")
        return daemon

    async def agent(
        self,
        auth_addresses: list[str],
        name: str = "agent",
        server_id: str = "node-1",
        data_dir: Path | None = None,
    ) -> AgentDaemon:
        """A `lockd agent`, once its socket answers (it need not have synced)."""
        directory = self.directory / name
        data = data_dir if data_dir is not None else directory / "data"
        socket = self.sockets / f"{name}.sock"
        servers = ", ".join(auth_addresses)
        config = (
            f"cluster_name: {CLUSTER}\n"
            f"data_dir: {data}\n"
            "log: {format: json, level: info}\n"
            "agent_service:\n"
            "  enabled: true\n"
            "  insecure: true\n"
            f"  server_id: {server_id}\n"
            f"  auth_servers: [{servers}]\n"
            f"  socket: {socket}\n"
            "  metrics_addr: ''\n"
        )
        process, log = self._spawn("agent", directory, config)
        daemon = AgentDaemon(process, directory, log, socket, data)
        self.started.append(daemon)

        async def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"lockd agent exited: {log.read_text()[-2000:]}")
            if not socket.exists():
                return False
            async with AgentClient.connect(str(socket)) as client:
                try:
                    await client.status()
                except Exception:
                    return False
            return True

        await eventually(answers, what=f"{name} to answer")
        return daemon

    def close(self) -> None:
        for daemon in reversed(self.started):
            if daemon.process.poll() is None:
                daemon.kill()


Popen = subprocess.Popen[bytes]


def dead_address() -> str:
    """An auth address nothing listens on (the auth server is "down")."""
    return f"127.0.0.1:{free_port()}"

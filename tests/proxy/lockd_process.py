"""A real `lockd start` (auth server + agent in one process, TLS with its own CA) for the
proxy suite's process tests, and `lockctl` / `lockd` commands run against it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from lockd.client import AgentClient
from lockd.domain.errors import LockdError
from tests.support import WAIT, eventually, free_port

BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0  # a cold start imports grpc and cryptography: slow on a loaded box


@dataclass(frozen=True, slots=True)
class LockdProcess:
    process: asyncio.subprocess.Process
    config: Path
    data_dir: Path
    agent_socket: Path


async def run(program: str, *args: str) -> tuple[int, str, str]:
    """Run `lockd` or `lockctl` to completion: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / program), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(WAIT * 3):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def agent_synced(socket: Path) -> bool:
    if not await asyncio.to_thread(socket.exists):
        return False
    try:
        async with AgentClient.connect(socket) as agent:
            return (await agent.status()).state == "synced"
    except LockdError:
        return False


@contextlib.asynccontextmanager
async def lockd_start(
    directory: Path, sockets: Path, *, cluster: str, strict: bool = False
) -> AsyncIterator[LockdProcess]:
    """`lockd start` until its agent is synced; killed at the end if still running."""
    data_dir, agent_socket = directory / "lockd", sockets / "agent.sock"
    auth_addr = f"127.0.0.1:{free_port()}"
    auth: dict[str, object] = {
        "enabled": True,
        "listen_addr": auth_addr,
        "join_listen_addr": f"127.0.0.1:{free_port()}",
        "admin_socket": str(sockets / "admin.sock"),
        "metrics_addr": "",
        "heartbeat_interval": "1s",
    }
    if strict:
        auth["authentication"] = {"locking_mode": "strict"}
    settings = {
        "cluster_name": cluster,
        "data_dir": str(data_dir),
        "log": {"format": "json"},
        "auth_service": auth,
        "agent_service": {
            "enabled": True,
            "auth_servers": [auth_addr],
            "socket": str(agent_socket),
            "metrics_addr": "",
        },
    }
    config = directory / "lockd.yaml"
    config.write_text(yaml.safe_dump(settings))
    with (directory / "lockd.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(BIN / "lockd"), "start", "--config", str(config), stdout=log, stderr=log
        )
    try:
        await eventually(
            lambda: agent_synced(agent_socket), within=START_TIMEOUT, what="lockd start"
        )
        yield LockdProcess(process, config, data_dir, agent_socket)
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(30):
            await process.wait()

"""A real `lockd auth` with `watch_workers: 2`: agents, `lockctl lock --wait`, SIGKILL.

The daemon (plaintext on loopback, SQLite) starts one worker process on its port; four
real agents (`AgentApp`) connect and land on either process; `lockctl lock --wait`
confirms a lock through all of them; SIGKILL of the daemon leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

from tests.agent.conftest import cluster  # noqa: F401 (the fixture)
from tests.agent.helpers import Cluster
from tests.e2e.test_single_writer import Processes, processes, text, until_serving  # noqa: F401
from tests.support import free_port

pytestmark = pytest.mark.slow

LOCKCTL = Path(sys.executable).with_name("lockctl")
AGENTS = 4
GONE_WITHIN = 30.0


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in found]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


async def test_lock_wait_confirms_through_workers_and_sigkill_leaves_no_worker(
    processes: Processes,  # noqa: F811 (the fixture)
    cluster: Cluster,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """lockctl lock --wait returns confirmed by every agent, whichever process serves
    it; after SIGKILL of the daemon its worker process exits by itself and removes the
    dead server's private forwarding directory."""
    port = free_port()
    data_dir = tmp_path / "auth"
    admin_socket = processes.sockets / "workers-admin.sock"
    config = processes.auth_config("auth", data_dir, admin_socket, port)
    with config.open("a", encoding="utf-8") as more:  # auth_service is the last section
        more.write("  heartbeat_interval: 1s\n  watch_workers: 2\n")
    daemon, stderr = processes.spawn("auth", config)
    await until_serving(daemon, admin_socket, stderr)
    (worker,) = children(daemon.pid)
    try:
        await _lock_wait_then_sigkill(daemon.pid, worker, port, config, cluster, stderr)
    finally:
        if alive(worker):
            os.kill(worker, signal.SIGKILL)


async def _lock_wait_then_sigkill(
    daemon: int, worker: int, port: int, config: Path, nodes: Cluster, stderr: Path
) -> None:
    address = f"127.0.0.1:{port}"
    for index in range(AGENTS):
        await nodes.start_agent(
            addresses=(address,), server_id=f"node-{index}", name=f"agent-{index}"
        )
    wait = await asyncio.create_subprocess_exec(
        str(LOCKCTL),
        "-c",
        str(config),
        "lock",
        "--user=mallory",
        "--message=workers",
        "--wait=30s",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await wait.communicate()
    assert wait.returncode == 0, (out + err).decode()
    assert f"lock applied by {AGENTS}/{AGENTS} agents" in err.decode(), (out + err).decode()

    forward_dir = Path(_logged(stderr, "watch worker serving")["forward_socket"]).parent
    assert forward_dir.is_dir()
    os.kill(daemon, signal.SIGKILL)
    deadline = time.monotonic() + GONE_WITHIN
    while alive(worker):
        assert time.monotonic() < deadline, f"worker {worker} outlived: {text(stderr)}"
        await asyncio.sleep(0.1)
    assert not forward_dir.exists(), "the dead server's forwarding socket was left behind"


def _logged(stderr: Path, event: str) -> dict[str, Any]:
    """The first JSON log line of `event` in the daemon's (and its workers') stderr."""
    for line in text(stderr).splitlines():
        if line.startswith("{") and (record := json.loads(line)).get("event") == event:
            return cast(dict[str, Any], record)
    raise AssertionError(f"no {event!r} in the log: {text(stderr)}")

"""The real daemon speaks systemd's notify protocol: `lockd auth` and `lockd agent`
subprocesses with $NOTIFY_SOCKET pointing at a test datagram socket, as systemd runs a
`Type=notify` unit (deploy/systemd)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.lockd_process import START_TIMEOUT, LockdProcess, running_lockd
from tests.support import free_port


class NotifySocket:
    """What systemd would receive: every datagram, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self.messages: list[str] = []

    def close(self) -> None:
        self._sock.close()

    def drain(self) -> None:
        while True:
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                return

    def wait_for(self, line: str, daemon: LockdProcess) -> None:
        """Until a datagram holds `line`; fail with the daemon's log otherwise."""
        deadline = time.monotonic() + START_TIMEOUT
        while not any(line in message.splitlines() for message in self.messages):
            if time.monotonic() > deadline or daemon.process.poll() is not None:
                raise AssertionError(f"no {line} in {self.messages}:\n{daemon.log()}")
            self.drain()

    def lines(self) -> list[str]:
        return [line for message in self.messages for line in message.splitlines()]


@pytest.fixture
def notify(socket_dir: Path) -> Iterator[NotifySocket]:
    """A $NOTIFY_SOCKET for one daemon."""
    sock = NotifySocket(socket_dir / "notify.sock")
    yield sock
    sock.close()


def _auth_config(directory: Path, listen: str) -> Path:
    config = directory / "auth.yaml"
    config.write_text(
        f"""
cluster_name: notify.test
data_dir: {directory / "auth"}
log: {{format: json, level: info}}
auth_service:
  enabled: true
  insecure: true
  listen_addr: {listen}
  admin_socket: {directory / "admin.sock"}
  metrics_addr: ""
  heartbeat_interval: 1s
"""
    )
    return config


def _env(notify: NotifySocket, **extra: str) -> dict[str, str]:
    return {**os.environ, "NOTIFY_SOCKET": str(notify.path), **extra}


def test_the_auth_server_reports_status_ready_watchdog_and_stopping(
    socket_dir: Path, notify: NotifySocket
) -> None:
    """STATUS= while starting, READY=1 once serving, WATCHDOG=1 pings (WATCHDOG_USEC
    set), STOPPING=1 on SIGTERM; the exit is clean."""
    config = _auth_config(socket_dir, f"127.0.0.1:{free_port()}")
    env = _env(notify, WATCHDOG_USEC="500000")
    with running_lockd(
        ["auth", "--config", str(config)], socket_dir / "auth.log", env=env
    ) as daemon:
        notify.wait_for("READY=1", daemon)
        notify.wait_for("WATCHDOG=1", daemon)
        assert daemon.stop() == 0, daemon.log()
    notify.drain()
    lines = notify.lines()
    assert lines[0] == "STATUS=starting"
    ready = lines.index("READY=1")
    assert lines[ready + 1] == "STATUS=auth server serving"
    assert "WATCHDOG=1" in lines
    assert lines[-2:] == ["STOPPING=1", "STATUS=stopping"]


def test_no_watchdog_pings_unless_systemd_asks_for_them(
    socket_dir: Path, notify: NotifySocket
) -> None:
    """Without WATCHDOG_USEC: READY=1 and STOPPING=1, never WATCHDOG=1."""
    config = _auth_config(socket_dir, f"127.0.0.1:{free_port()}")
    env = _env(notify)
    env.pop("WATCHDOG_USEC", None)
    with running_lockd(
        ["auth", "--config", str(config)], socket_dir / "auth.log", env=env
    ) as daemon:
        notify.wait_for("READY=1", daemon)
        assert daemon.stop() == 0, daemon.log()
    notify.drain()
    assert "STOPPING=1" in notify.lines()
    assert "WATCHDOG=1" not in notify.lines()


def test_the_agent_is_ready_only_after_its_first_sync(
    socket_dir: Path, notify: NotifySocket
) -> None:
    """`lockd agent` with no auth server: STATUS says it has no view and no READY=1
    comes; once the auth server runs, the agent syncs and READY=1 follows."""
    listen = f"127.0.0.1:{free_port()}"
    agent_config = socket_dir / "agent.yaml"
    agent_config.write_text(
        f"""
cluster_name: notify.test
data_dir: {socket_dir / "agent"}
log: {{format: json, level: info}}
agent_service:
  enabled: true
  insecure: true
  auth_servers: [{listen}]
  socket: {socket_dir / "agent.sock"}
  metrics_addr: ""
"""
    )
    with running_lockd(
        ["agent", "--config", str(agent_config)], socket_dir / "agent.log", env=_env(notify)
    ) as agent:
        notify.wait_for("STATUS=agent syncing: no lock view yet", agent)
        assert "READY=1" not in notify.lines()
        auth_config = _auth_config(socket_dir, listen)
        with running_lockd(["auth", "--config", str(auth_config)], socket_dir / "auth.log"):
            notify.wait_for("READY=1", agent)
            assert agent.stop() == 0, agent.log()
    notify.drain()
    lines = notify.lines()
    assert lines[lines.index("READY=1") + 1].startswith("STATUS=agent synced")
    assert lines[-2:] == ["STOPPING=1", "STATUS=stopping"]


def test_a_restarted_agent_is_ready_on_its_persisted_view_while_auth_is_down(
    socket_dir: Path, notify: NotifySocket
) -> None:
    """best_effort: an agent that synced once, restarted with no auth server reachable,
    sends READY=1 on the view it saved, and says so in STATUS."""
    listen = f"127.0.0.1:{free_port()}"
    agent_config = socket_dir / "agent.yaml"
    agent_config.write_text(
        f"""
cluster_name: notify.test
data_dir: {socket_dir / "agent"}
agent_service:
  enabled: true
  insecure: true
  auth_servers: [{listen}]
  socket: {socket_dir / "agent.sock"}
  metrics_addr: ""
"""
    )
    auth_config = _auth_config(socket_dir, listen)
    with (
        running_lockd(["auth", "--config", str(auth_config)], socket_dir / "auth.log"),
        running_lockd(
            ["agent", "--config", str(agent_config)], socket_dir / "first.log", env=_env(notify)
        ) as first,
    ):
        notify.wait_for("READY=1", first)
        assert first.stop() == 0, first.log()
    notify.drain()
    notify.messages.clear()
    with running_lockd(
        ["agent", "--config", str(agent_config)], socket_dir / "second.log", env=_env(notify)
    ) as second:
        notify.wait_for("READY=1", second)
        assert second.stop() == 0, second.log()
    lines = notify.lines()
    status = lines[lines.index("READY=1") + 1]
    assert status.startswith("STATUS=agent syncing, enforcing its last known view at revision")

"""A throwaway local etcd for `lockd bench propagation --peer etcd`.

`find_etcd` locates the `etcd` binary, installing Debian's `etcd-server` with apt-get
when it is missing and the bench runs as root; otherwise it says why the peer is
skipped. `EtcdServer` runs one single-member etcd on free 127.0.0.1 ports (client and
peer URLs on loopback) with its data directory in the run's temporary directory, and
puts the probe key. The process is a Reaper child (killed with the others on Ctrl-C,
SIGTERM or an error) and asks the kernel to kill it when the coordinator dies, like
every other child of the bench.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import grpc

from lockd.bench import etcd_wire
from lockd.bench.authproc import free_port
from lockd.bench.procs import Reaper, interrupted

READY_TIMEOUT = 60.0
PUT_TIMEOUT = 30.0
INSTALL_TIMEOUT = 600.0
PACKAGE = "etcd-server"
# Set PR_SET_PDEATHSIG, then exec etcd (the setting survives execve): etcd cannot
# outlive the coordinator even after a `kill -9` of `lockd bench`.
_EXEC_DYING_WITH_PARENT = (
    "import os, sys; from lockd.bench.procs import die_with_parent; "
    "die_with_parent(); os.execv(sys.argv[1], sys.argv[1:])"
)


def _apt_install() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", PACKAGE],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def find_etcd() -> tuple[str | None, str]:
    """(path of etcd, "") or (None, why the etcd peer is skipped)."""
    found = shutil.which("etcd")
    if found is not None:
        return found, ""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return (
            None,
            f"etcd is not installed (Debian's {PACKAGE}; installing needs root and apt-get)",
        )
    print(f"lockd bench: installing Debian's {PACKAGE} for the etcd peer", file=sys.stderr)
    done = _apt_install()
    if done.returncode != 0:  # a stale package list: refresh it once
        subprocess.run(
            ["apt-get", "update", "-qq"],
            capture_output=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        done = _apt_install()
    found = shutil.which("etcd")
    if found is None:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return None, f"apt-get install {PACKAGE} failed: {lines[-1] if lines else done.returncode}"
    return found, ""


class EtcdServer:
    """One single-member etcd on loopback, its data in the run's directory."""

    def __init__(self, reaper: Reaper, binary: str) -> None:
        self._reaper = reaper
        self._binary = binary
        self.port = free_port()
        self._peer_port = free_port()
        self._dir = reaper.workdir / "etcd"
        self._log = self._dir / "etcd.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._put: Any = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def _args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self._peer_port}"
        return [
            self._binary,
            "--name=bench",
            f"--data-dir={self._dir / 'data'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=bench={peer}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=warn",
        ]

    async def start(self) -> int:
        """Start etcd and put the probe key once it answers; the revision that put got."""
        self._dir.mkdir(parents=True, exist_ok=True)
        with self._log.open("wb") as log:
            self._process = self._reaper.popen(
                [sys.executable, "-c", _EXEC_DYING_WITH_PARENT, *self._args()],
                stdout=log,
                stderr=log,
            )
        self._channel = grpc.aio.insecure_channel(self.address)
        self._put = self._channel.unary_unary(etcd_wire.PUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"etcd exited at start: {self._log_tail()}")
            try:
                return await self.put(b"ready", within=2.0)
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd did not answer: {self._log_tail()}") from None
                await asyncio.sleep(0.2)

    async def put(self, value: bytes, within: float = PUT_TIMEOUT) -> int:
        """Put the probe key; the store revision it committed at."""
        reply = await self._put(etcd_wire.put_request(etcd_wire.KEY, value), timeout=within)
        return etcd_wire.header_revision(reply)

    def _log_tail(self) -> str:
        try:
            lines = self._log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return " | ".join(lines[-3:]) or "no log"

    async def close(self) -> None:
        """Stop etcd: SIGTERM and a short grace, or SIGKILL at once when interrupted."""
        if self._channel is not None:
            await self._channel.close()
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if interrupted() else signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 10.0)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        self._reaper.forget(process.pid)

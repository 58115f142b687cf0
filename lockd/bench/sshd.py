"""A throwaway OpenSSH server enforced by lockd, as docs/ssh.md sets it up.

Used by `lockd bench ssh` and by the tests of tests/ssh: the system's `sshd` binary, run
as root in the foreground (`-D`) from a config in a directory of its own (host key, the
SSH user CA in TrustedUserCAKeys, an authorized_keys file for plain keys) on a free
127.0.0.1 port. `guarded` (the default): `lockd ssh-session guard` runs next to it and
sshd asks it through AuthorizedPrincipalsCommand / AuthorizedKeysCommand, with
`lockd ssh-session --guarded` as the ForceCommand; otherwise the hook alone
(`lockd ssh-session` as the ForceCommand). Nothing in /etc changes; only sshd's
privilege separation directory (/run/sshd) is created when it is missing, as Debian's
own unit does, and, when the checkout lies where sshd will not run an auth command from
(under /tmp, say), a private directory in /run holds a root-owned `lockd` that execs this
checkout's (removed at stop).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lockd.pki_openssh import SSHUserCA, SSHUserIdentity

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
LOCKD = str(Path(sys.executable).parent / "lockd")
PRIVSEP_DIR = Path("/run/sshd")
LOGIN = "root"  # the sessions log in as root: no OS user to create
START_TIMEOUT = 20.0


def why_no_sshd() -> str | None:
    """Why a throwaway sshd cannot run here, or None when it can."""
    if not Path(SSHD).exists():
        return "openssh-server is not installed (`make system-deps` installs it as root)"
    if shutil.which("ssh") is None or shutil.which("sftp") is None:
        return "openssh-client (ssh, sftp) is not installed"
    if os.geteuid() != 0:
        return "sshd needs root to run sessions (run as root)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def processes_under(root: int) -> list[int]:
    """The processes whose parent chain reaches `root` (one pass over /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found = []
    for pid in parents:
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != root:
            ancestor = parents.get(ancestor, 0)
        if ancestor == root:
            found.append(pid)
    return found


def safe_for_sshd(path: Path) -> bool:
    """sshd's rule for AuthorizedKeysCommand / AuthorizedPrincipalsCommand: the file and
    every directory above it are root-owned and writable by nobody else."""
    for part in (path, *path.parents):
        status = part.stat()
        if status.st_uid != 0 or status.st_mode & 0o022:
            return False
    return True


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


@dataclass
class ThrowawaySSHD:
    directory: Path
    ca: SSHUserCA
    hook_config: Path  # the config `lockd ssh-session --config` reads
    guarded: bool = True
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    guard: subprocess.Popen[bytes] | None = None
    auth_command_dir: Path | None = None  # the /run directory of the exec wrapper, if any

    @property
    def ca_file(self) -> Path:
        return self.directory / "user_ca.pub"

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def guard_socket(self) -> Path:
        return self.directory / "guard.sock"

    @property
    def guard_log(self) -> Path:
        return self.directory / "guard.log"

    def enforcement_lines(self) -> str:
        """The sshd_config lines that put lockd in charge (docs/ssh.md)."""
        if not self.guarded:
            return (
                f"AuthorizedKeysFile {self.directory / 'authorized_keys'}\n"
                f"ForceCommand {LOCKD} ssh-session --config {self.hook_config}\n"
            )
        ask = f"{self.auth_command()} ssh-session %s --socket {self.guard_socket} %%u %%t %%k"
        # AuthorizedPrincipalsCommand first: sshd 9.2 ignores it after AuthorizedKeysCommand.
        return (
            f"AuthorizedPrincipalsCommand {ask % 'auth-principals'}\n"
            "AuthorizedPrincipalsCommandUser root\n"
            f"AuthorizedKeysCommand {ask % 'auth-keys'}\n"
            "AuthorizedKeysCommandUser root\n"
            "AuthorizedKeysFile none\n"
            f"ForceCommand {LOCKD} ssh-session --guarded\n"
        )

    def auth_command(self) -> str:
        """This checkout's `lockd` as sshd accepts it for the auth commands: itself where
        its path is safe, else a root-owned wrapper in a private directory in /run."""
        if safe_for_sshd(Path(LOCKD).resolve()):
            return LOCKD
        if self.auth_command_dir is None:
            self.auth_command_dir = Path(tempfile.mkdtemp(prefix="lockd-sshd-", dir="/run"))
            wrapper = self.auth_command_dir / "lockd"
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(LOCKD)} "$@"\n', encoding="utf-8")
            wrapper.chmod(0o755)
        return str(self.auth_command_dir / "lockd")

    def start_guard(self) -> None:
        with self.guard_log.open("ab") as log:
            self.guard = subprocess.Popen(
                [
                    LOCKD,
                    "ssh-session",
                    "guard",
                    "--config",
                    str(self.hook_config),
                    "--listen",
                    str(self.guard_socket),
                    "--authorized-keys",
                    str(self.directory / "authorized_keys"),
                ],
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.guard_socket.exists():
            if self.guard.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lockd ssh-session guard did not start: {self.guard_text()}")
            time.sleep(0.05)

    def guard_text(self) -> str:
        return self.guard_log.read_text(errors="replace") if self.guard_log.exists() else ""

    def start(self) -> None:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        keygen(self.directory / "host_key")
        self.ca_file.write_bytes(self.ca.public_line + b"\n")
        (self.directory / "authorized_keys").touch()
        self.port = free_port()
        if self.guarded:
            self.start_guard()
        config = self.directory / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            "ListenAddress 127.0.0.1\n"
            f"HostKey {self.directory / 'host_key'}\n"
            f"PidFile {self.directory / 'sshd.pid'}\n"
            f"TrustedUserCAKeys {self.ca_file}\n"
            + self.enforcement_lines()
            + "PermitRootLogin yes\n"
            "StrictModes no\n"  # the directory lives under the world-writable /tmp
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "ExposeAuthInfo yes\n"
            f"Subsystem sftp {SFTP_SERVER}\n"
            "AllowTcpForwarding yes\n"
            "MaxStartups 500\n"  # many clients connecting at once (the benchmark)
            "LogLevel VERBOSE\n",
            encoding="utf-8",
        )
        self.process = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(self.log)])
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def user_key(
        self,
        name: str,
        identity: SSHUserIdentity | None = None,
        principals: tuple[str, ...] = (LOGIN,),
    ) -> Path:
        """A fresh key; with `identity`, a certificate for it from the SSH user CA (next
        to it, as `ssh -i` expects), else the key goes into authorized_keys."""
        key = keygen(self.directory / f"key-{name}")
        public = key.with_name(key.name + ".pub").read_bytes()
        if identity is None:
            with (self.directory / "authorized_keys").open("ab") as keys:
                keys.write(public)
            return key
        signed = self.ca.sign(public, identity, principals, datetime.now(UTC), timedelta(hours=1))
        key.with_name(key.name + "-cert.pub").write_bytes(signed.certificate + b"\n")
        return key

    def ssh_options(self, key: Path) -> list[str]:
        """Options for ssh (and, with -p as -P, sftp and scp): this server, this key,
        no prompts, a known_hosts file of its own."""
        return [
            "-F",
            "/dev/null",
            "-p",
            str(self.port),
            "-i",
            str(key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={self.directory / 'known_hosts'}",
            "-o",
            "LogLevel=ERROR",
        ]

    def stop(self) -> None:
        """Stop the listener and kill every connection's processes: a stopped listening
        sshd leaves its connections running, and a run that failed halfway may have left
        sessions open."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            for pid in processes_under(process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _terminate(process)
        guard, self.guard = self.guard, None
        if guard is not None and guard.poll() is None:
            _terminate(guard)
        directory, self.auth_command_dir = self.auth_command_dir, None
        if directory is not None:
            shutil.rmtree(directory)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)

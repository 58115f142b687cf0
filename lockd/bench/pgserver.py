"""A throwaway PostgreSQL cluster made with `initdb` and run with `pg_ctl`.

For `lockd bench --store postgres` and the test suite's fixtures (tests/postgres_server.py):
a private directory (data/, sock/, postgres.log) holding one cluster that listens on
127.0.0.1 and a Unix socket in that directory. PostgreSQL refuses to run as root, so as
root every server program runs as the unprivileged user `nobody`, which then owns the
directory. Also: stop/start mid-run, a streaming-replication standby, and promotion.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SUPERUSER = "postgres"
PASSWORD = "lockd-test-password"  # for TCP (scram-sha-256); the Unix socket trusts
UNPRIVILEGED_USER = "nobody"
_SEARCH = ("/usr/lib/postgresql/*/bin",)

_database_numbers = itertools.count(1)
COMMAND_TIMEOUT = 60.0  # generous: initdb and pg_basebackup on a loaded 2-core machine


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def find_bin_dir() -> Path | None:
    """The directory with initdb and pg_ctl: $LOCKD_PG_BIN, else the newest Debian one."""
    configured = os.environ.get("LOCKD_PG_BIN")
    if configured:
        return Path(configured) if (Path(configured) / "pg_ctl").exists() else None
    candidates = [
        path
        for pattern in _SEARCH
        for path in Path("/").glob(pattern.lstrip("/"))
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    return max(candidates, key=lambda path: int(path.parent.name), default=None)


def run_as() -> str | None:
    """The user to run server commands as: `nobody` when we are root, else ourselves."""
    return UNPRIVILEGED_USER if os.geteuid() == 0 else None


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in `home` (data/, sock/, log): init, start, stop, replicate."""

    bin_dir: Path
    home: Path
    port: int
    name: str = "primary"
    # Off for tests (power cuts are not under test, and it makes every commit cheap); on
    # for benchmarks, whose figures must include the fsync of each commit.
    fsync: bool = False
    _spare: list[str] = field(default_factory=list)  # emptied databases for reuse

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "sock"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def dsn(self, database: str = "postgres") -> str:
        """A TCP DSN with the superuser's password, as an operator would configure it."""
        return f"postgresql://{SUPERUSER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _server_command(self, *args: str | Path) -> str:
        """Run one of the server's programs as the unprivileged user; its stdout."""
        result = subprocess.run(
            [str(arg) for arg in args],
            user=run_as(),
            cwd=self.home,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n"
                f"server log tail:\n{log[-2000:]}"
            )
        return result.stdout

    def _make_home(self) -> None:
        self.home.mkdir(mode=0o700)
        self.socket_dir.mkdir(mode=0o700)
        user = run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.home, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _configure(self, **settings: str | int) -> None:
        """Append settings to postgresql.conf (a later line wins over an earlier one)."""
        lines = [
            f"{key} = '{value}'" if isinstance(value, str) else f"{key} = {value}"
            for key, value in settings.items()
        ]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(["", *lines, ""]))

    def _own_settings(self) -> dict[str, str | int]:
        return {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "cluster_name": self.name,
        }

    def init(self) -> None:
        self._make_home()
        password_file = self.home / "password"
        password_file.write_text(PASSWORD + "\n")
        user = run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        self._server_command(
            self.bin_dir / "initdb",
            "-D",
            self.data_dir,
            "-U",
            SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        password_file.unlink()
        self._configure(
            **self._own_settings(),
            fsync="on" if self.fsync else "off",
            full_page_writes="on" if self.fsync else "off",
            max_connections=200,
            shared_buffers="32MB",
        )

    def start(self) -> None:
        self._server_command(
            self.bin_dir / "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            self.data_dir,
            "-l",
            self.log_file,
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server if it runs; `immediate` is a crash (no shutdown checkpoint)."""
        if self.running:
            self._server_command(
                self.bin_dir / "pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", self.data_dir
            )

    def restart(self) -> None:
        self.stop()
        self.start()

    def promote(self) -> None:
        """Turn this standby into a primary that accepts writes (`pg_ctl promote`)."""
        self._server_command(
            self.bin_dir / "pg_ctl", "promote", "-w", "-t", "60", "-D", self.data_dir
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket; unaligned tuples-only output."""
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self) -> str:
        """A new empty database: reused from `recycle_database` when one is spare
        (dropping and creating costs ~0.2 s, emptying one ~0.03 s)."""
        if self._spare:
            return self._spare.pop()
        name = f"lockd_test_{os.getpid()}_{next(_database_numbers)}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def recycle_database(self, name: str) -> None:
        """Empty `name` for the next `create_database`: its sessions ended (with their
        advisory locks and LISTENs), connections allowed again, its public schema new."""
        self.psql(
            f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true; '
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        self.psql(
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION pg_database_owner",
            database=name,
        )
        self._spare.append(name)

    def make_standby(self, name: str, *, synchronous: bool = False) -> PostgresServer:
        """A running streaming-replication standby of this server, caught up.

        `synchronous`: this server then waits for the standby before acknowledging a
        commit (synchronous_standby_names); `stop_replicating_to` undoes that.
        """
        standby = PostgresServer(
            self.bin_dir, self.home.parent / name, free_port(), name, fsync=self.fsync
        )
        standby._make_home()
        standby._server_command(
            self.bin_dir / "pg_basebackup",
            "-D",
            standby.data_dir,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-h",
            self.socket_dir,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
        )
        standby._configure(**standby._own_settings())
        if synchronous:
            self.psql(f"ALTER SYSTEM SET synchronous_standby_names = '\"{name}\"'")
            self.psql("SELECT pg_reload_conf()")
        standby.start()
        wanted = "sync" if synchronous else "async"
        query = f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{name}'"
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while self.psql(query) != wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby {name} did not start streaming ({wanted})")
            time.sleep(0.1)
        return standby

    def stop_replicating_to(self, standby: PostgresServer) -> None:
        """Stop and remove `standby`; this server no longer waits for it."""
        standby.stop(mode="immediate")
        if not self.running:
            self.start()  # or the next start waits for a standby that is gone
        self.psql("ALTER SYSTEM RESET synchronous_standby_names")
        self.psql("SELECT pg_reload_conf()")
        shutil.rmtree(standby.home, ignore_errors=True)


def prerequisite_problem() -> str | None:
    """Why this machine cannot run a throwaway server, or None when it can."""
    if find_bin_dir() is None:
        return (
            "PostgreSQL server binaries not found (looked for initdb/pg_ctl in "
            "/usr/lib/postgresql/*/bin and $LOCKD_PG_BIN); `make system-deps` installs them"
        )
    user = run_as()
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"running as root and there is no user {user!r} to run PostgreSQL as"
    return None


def start_throwaway(*, fsync: bool) -> PostgresServer:
    """A new cluster, initialised and started, in a new directory under /tmp (owned by the
    user the server runs as); `discard` stops it and removes the directory."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(prerequisite_problem())
    root = Path(tempfile.mkdtemp(prefix="lockd-pg-", dir="/tmp"))
    user = run_as()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, root / "primary", free_port(), fsync=fsync)
    try:
        server.init()
        server.start()
    except BaseException:
        discard(server)
        raise
    return server


def discard(server: PostgresServer) -> None:
    """Stop a server from `start_throwaway` and any standby made of it (they live in the
    same directory), then remove the directory."""
    root = server.home.parent
    try:
        server.stop()
    finally:
        for pid_file in root.glob("*/data/postmaster.pid"):
            home = pid_file.parent.parent
            PostgresServer(server.bin_dir, home, 0, home.name).stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)

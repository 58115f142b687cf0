"""`make run-ha`: a local HA cluster to try — PostgreSQL, two auth replicas, two agents.

Everything lives in ./data/ha: a PostgreSQL cluster (initdb/pg_ctl from the Debian
packages, run as `nobody` when started as root; kept between runs), the configs, and
the data dirs of two `lockd auth` replicas (plaintext on loopback) and two `lockd agent`s,
each agent listing both replicas (in opposite orders). Ctrl-C (or SIGTERM) stops the
agents, the replicas and PostgreSQL, in that order. docs/ha.md says what to try.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

from lockd.bench.pgserver import PostgresServer, find_bin_dir, prerequisite_problem, run_as

HOME = Path("data/ha").resolve()
PG_PORT = 54329
REPLICAS = {"a": 3125, "b": 3135}
AGENTS = {"node-1": ("a", "b"), "node-2": ("b", "a")}
LOCKD = Path(sys.executable).with_name("lockd")


def start_postgres() -> PostgresServer:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit(f"run-ha: {prerequisite_problem()} (make system-deps installs it)")
    HOME.mkdir(parents=True, exist_ok=True)
    user = run_as()
    if user is not None:  # PostgreSQL refuses root: its directory belongs to `nobody`
        entry = pwd.getpwnam(user)
        os.chown(HOME, entry.pw_uid, entry.pw_gid)
    server = PostgresServer(bin_dir, HOME / "postgres", PG_PORT, fsync=True)
    if not server.data_dir.exists():
        server.init()
    server.start()
    if server.psql("SELECT 1 FROM pg_database WHERE datname = 'lockd'") != "1":
        server.psql("CREATE DATABASE lockd")
    return server


def auth_config(name: str, port: int, dsn: str) -> Path:
    path = HOME / f"{name}.yaml"
    path.write_text(
        f"""\
cluster_name: ha.local
data_dir: {HOME / name}
log: {{format: console, level: info}}
auth_service:
  enabled: true
  insecure: true
  listen_addr: 127.0.0.1:{port}
  join_listen_addr: 127.0.0.1:{port + 1}
  metrics_addr: 127.0.0.1:{port + 2}
  storage:
    type: postgres
    dsn: "{dsn}"
    sslmode: disable
""",
        encoding="utf-8",
    )
    return path


def agent_config(name: str, replicas: tuple[str, ...], metrics_port: int) -> Path:
    servers = ", ".join(f'"127.0.0.1:{REPLICAS[replica]}"' for replica in replicas)
    path = HOME / f"{name}.yaml"
    path.write_text(
        f"""\
cluster_name: ha.local
data_dir: {HOME / name}
log: {{format: console, level: info}}
agent_service:
  enabled: true
  insecure: true
  server_id: {name}
  auth_servers: [{servers}]
  socket: {HOME / name / "agent.sock"}
  metrics_addr: 127.0.0.1:{metrics_port}
""",
        encoding="utf-8",
    )
    return path


def main() -> int:
    server = start_postgres()
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        dsn = server.dsn("lockd")
        for name, port in REPLICAS.items():
            config = auth_config(name, port, dsn)
            children.append(subprocess.Popen([str(LOCKD), "auth", "--config", str(config)]))
        for index, (name, replicas) in enumerate(AGENTS.items()):
            config = agent_config(name, replicas, 3190 + index)
            children.append(subprocess.Popen([str(LOCKD), "agent", "--config", str(config)]))
        print(
            f"\nrun-ha: PostgreSQL on 127.0.0.1:{PG_PORT}, replicas a (127.0.0.1:3125) and b "
            "(127.0.0.1:3135), agents node-1 and node-2.\n"
            "  lockctl -c data/ha/a.yaml status\n"
            "  lockctl -c data/ha/b.yaml lock --user=alice --wait\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        for child in reversed(children):  # agents first, then the replicas
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

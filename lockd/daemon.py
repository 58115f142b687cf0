"""The composition root: `lockd auth | agent | start --config FILE`.

Reads the config, builds the store, services and servers it enables, runs them until
SIGTERM or SIGINT, then stops them gracefully (exit 0). Configuration errors exit 2 with
`ERROR: <message>` on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from lockd import __version__
from lockd.api.agent_server import AgentApp, AgentSettings
from lockd.api.auth_server import AuthServerApp, AuthServerSettings, TlsSettings
from lockd.api.join import AgentIdentity, issue_local_agent_identity, join
from lockd.auth.watch import WatchSettings
from lockd.config import Config, audit_path, load_config, resolve_server_id
from lockd.domain.errors import LockdError, UnavailableError, ValidationError
from lockd.domain.ports import Clock, SystemClock
from lockd.obs.audit import AuditSink, open_audit_sink
from lockd.obs.logging import configure_logging
from lockd.obs.metrics import AgentMetrics, AuthMetrics, GrpcServerMetrics, MetricsEndpoint
from lockd.recovery import delete_lock_offline
from lockd.store import build_store

_log = structlog.get_logger("lockd")

DEFAULT_CONFIG = Path("/etc/lockd.yaml")
# Many long-lived objects for each stream or session, and a high allocation rate: with
# CPython's default (700, 10, 10) the collector ran ~100 times a second and its full
# collections stopped the event loop for 100+ ms (`lockd bench`, docs/benchmarks.md).
GC_THRESHOLDS = (50_000, 20, 10)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockd",
        description="lockd daemons: the auth server and the node agent.",
        epilog="Example: lockd start --config /etc/lockd.yaml",
    )
    parser.add_argument("--version", action="version", version=f"lockd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("start", "run every service the config enables"),
        ("auth", "run the auth server only"),
        ("agent", "run the node agent only"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument(
            "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file"
        )
    text = "offline repairs on the auth host, with the auth server stopped"
    recover = commands.add_parser(
        "recover",
        help=text,
        description=text,
        epilog="Example: lockd recover delete-lock dc7cee9d-fe5e-4534-a90d-db770f0234a1 "
        "--config /etc/lockd.yaml\n(the way out of a lock on Admin: see docs/security.md)",
    )
    actions = recover.add_subparsers(dest="action", required=True)
    delete = actions.add_parser(
        "delete-lock", help="delete a lock straight from the store (server stopped)"
    )
    delete.add_argument("name", help="the lock's name")
    delete.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="the auth server's config"
    )
    text = "measure lockd on this machine (lockd bench --help)"
    commands.add_parser("bench", help=text, description=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["bench"]:
        from lockd.bench.cli import main as bench  # its imports only when asked for

        return bench(arguments[1:])
    args = build_parser().parse_args(arguments)
    try:
        config = load_config(args.config)
        _check_enabled(config, args.command)
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    if args.command == "recover":
        return _recover(config, args.name)
    configure_logging(config.log.format, config.log.level)
    try:
        asyncio.run(run(config, args.command))
    except LockdError as error:
        _log.error("lockd failed", error=str(error))
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


def _recover(config: Config, name: str) -> int:
    audit = open_audit_sink(audit_path(config) or config.audit.sink)
    try:
        revision = asyncio.run(delete_lock_offline(config, name, audit))
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValidationError) else 1
    finally:
        audit.close()
    print(f'lock "{name}" has been deleted (revision {revision}); start the auth server again')
    return 0


def _check_enabled(config: Config, command: str) -> None:
    if command in ("auth", "recover") and not config.auth_service.enabled:
        raise ValidationError("auth_service is not enabled in the config")
    if command == "agent" and not config.agent_service.enabled:
        raise ValidationError("agent_service is not enabled in the config")


async def run(config: Config, command: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    clock = SystemClock()
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    async with contextlib.AsyncExitStack() as stack:
        audit = open_audit_sink(audit_path(config) or config.audit.sink)
        stack.callback(audit.close)
        auth: AuthServerApp | None = None
        if command in ("auth", "start") and config.auth_service.enabled:
            registry = CollectorRegistry()
            auth = build_auth_server(config, clock, audit, registry)
            await auth.start()
            stack.push_async_callback(auth.stop)
            _serve_metrics(stack, registry, config.auth_service.metrics_addr)
        if command in ("agent", "start") and config.agent_service.enabled:
            registry = CollectorRegistry()
            identity = await agent_identity(config, auth, clock)
            agent = build_agent(config, clock, audit, registry, identity)
            await agent.start()
            stack.push_async_callback(agent.stop)
            _serve_metrics(stack, registry, config.agent_service.metrics_addr)
        tune_gc()
        await stop.wait()
        _log.info("stopping")


def tune_gc() -> None:
    """Collect once, keep what survived the start (modules, the loaded state) out of every
    later collection, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _serve_metrics(
    stack: contextlib.AsyncExitStack, registry: CollectorRegistry, addr: str
) -> None:
    if not addr:
        return
    endpoint = MetricsEndpoint(registry, addr)
    try:
        endpoint.start()
    except OSError as error:
        raise UnavailableError(f"cannot serve metrics on {addr}: {error}") from None
    stack.callback(endpoint.stop)
    _log.info("serving metrics", url=endpoint.url)


def build_auth_server(
    config: Config, clock: Clock, audit: AuditSink, registry: CollectorRegistry
) -> AuthServerApp:
    auth = config.auth_service
    storage = auth.storage
    store = build_store(storage.type, storage.path)
    settings = AuthServerSettings(
        cluster_name=config.cluster_name,
        listen_addr=auth.listen_addr,
        admin_socket=auth.admin_socket,
        static_locking_mode=auth.authentication.locking_mode,
        watch=WatchSettings(heartbeat_interval=auth.heartbeat_interval),
        tls=None
        if auth.insecure
        else TlsSettings(
            ca_dir=config.data_dir, join_listen_addr=auth.join_listen_addr, hosts=auth.tls_names
        ),
    )
    return AuthServerApp(
        settings, store, clock, audit, AuthMetrics(registry), GrpcServerMetrics(registry)
    )


async def agent_identity(
    config: Config, local_auth: AuthServerApp | None, clock: Clock
) -> AgentIdentity | None:
    """The agent's certificate: from the local CA (embedded), the data dir, or a join.

    None means plaintext: the local auth server is insecure, or the agent is configured
    `insecure` for a dev cluster.
    """
    agent = config.agent_service
    if local_auth is not None:
        if local_auth.ca is None:
            return None
        return issue_local_agent_identity(local_auth.ca, resolve_server_id(config), clock.now())
    if agent.insecure:
        return None
    stored = AgentIdentity.load(config.data_dir)
    if stored is not None and stored.valid_at(clock.now()):
        return stored
    if stored is not None:
        _log.warning("the stored agent certificate has expired; joining again")
    if not agent.join_token or not agent.ca_pin:
        raise ValidationError(
            "agent_service.join_token and agent_service.ca_pin are needed to join the "
            "cluster (`lockctl tokens add --type=agent` prints both), or set "
            "agent_service.insecure for a plaintext development cluster"
        )
    failures = []
    for address in agent.join_servers:
        try:
            identity = await join(
                address, agent.join_token, resolve_server_id(config), agent.ca_pin
            )
        except (UnavailableError, OSError) as error:
            failures.append(f"{address}: {error}")
            continue
        identity.save(config.data_dir)
        return identity
    raise UnavailableError("could not join through any join server: " + "; ".join(failures))


def build_agent(
    config: Config,
    clock: Clock,
    audit: AuditSink,
    registry: CollectorRegistry,
    identity: AgentIdentity | None,
) -> AgentApp:
    agent = config.agent_service
    settings = AgentSettings(
        cluster_name=config.cluster_name,
        server_id=resolve_server_id(config),
        auth_servers=agent.auth_servers,
        socket=agent.socket,
        socket_mode=agent.socket_mode,
        max_staleness=agent.max_staleness,
        data_dir=config.data_dir,
    )
    return AgentApp(
        settings, clock, audit, AgentMetrics(registry), GrpcServerMetrics(registry), identity
    )


if __name__ == "__main__":
    sys.exit(main())

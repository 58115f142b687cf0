"""The `lockd` daemon command: `lockd auth | agent | start --config FILE`, `lockd recover`.

Reads the config, starts what it enables through `lockd.runtime` (the wiring), runs it
until SIGTERM or SIGINT, then stops it gracefully (exit 0). Configuration errors exit 2
with `ERROR: <message>` on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from lockd import __version__
from lockd.config import Config, audit_path, load_config
from lockd.domain.errors import LockdError, UnavailableError, ValidationError
from lockd.domain.ports import SystemClock
from lockd.obs.audit_writer import open_audit_sink
from lockd.obs.http_endpoint import HealthCheck, MetricsEndpoint
from lockd.obs.logging import configure_logging
from lockd.obs.process_metrics import register_process_metrics
from lockd.runtime.auth_app import AuthApp
from lockd.runtime.builders import agent_identity, start_agent, start_auth_server
from lockd.runtime.gc_tuning import tune_gc
from lockd.runtime.health_probe import probe
from lockd.runtime.process_lock import ProcessLock
from lockd.runtime.recovery import delete_lock_offline
from lockd.runtime.service_health import ServiceHealth

_log = structlog.get_logger("lockd")

DEFAULT_CONFIG = Path("/etc/lockd.yaml")
AUTH_SERVER = "lockd auth server"
AGENT = "lockd agent"


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
    text = "ask the local services' /readyz on their metrics ports (exit 0 when ready)"
    health_command = commands.add_parser(
        "health",
        help=text,
        description=text + "; for Docker's HEALTHCHECK and scripts (no client certificate)",
    )
    health_command.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="YAML config file"
    )
    health_command.add_argument(
        "--live", action="store_true", help="ask /healthz: running, though maybe not ready"
    )
    text = "check a config file without starting anything"
    config = commands.add_parser("config", help=text, description=text)
    config_actions = config.add_subparsers(dest="action", required=True)
    check = config_actions.add_parser(
        "check", help="validate FILE: exit 0 and a summary, or 2 and what is wrong"
    )
    check.add_argument("file", type=Path, help="the YAML config file")
    # `lockd bench` and `lockd proxy` are dispatched before this parser (lockd.entrypoint);
    # listed for --help.
    text = "measure lockd on this machine (lockd bench --help)"
    commands.add_parser("bench", help=text, description=text, add_help=False)
    text = "the TLS proxy that enforces locks on PostgreSQL and TCP (lockd proxy --help)"
    commands.add_parser("proxy", help=text, description=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(arguments)
    if args.command == "config":
        return _check_config(args.file)
    try:
        config = load_config(args.config)
        _check_enabled(config, args.command)
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    if args.command == "recover":
        return _recover(config, args.name)
    if args.command == "health":
        return _health(config, args.live)
    configure_logging(config.log.format, config.log.level)
    try:
        asyncio.run(run(config, args.command))
    except LockdError as error:
        _log.error("lockd failed", error=str(error))
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


def _recover(config: Config, name: str) -> int:
    try:
        held = ProcessLock.acquire(config.data_dir, "auth", AUTH_SERVER)
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    audit = open_audit_sink(audit_path(config) or config.audit.sink)
    try:
        revision = asyncio.run(delete_lock_offline(config, name, audit))
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValidationError) else 1
    finally:
        audit.close()
        held.release()
    # A PostgreSQL store is shared by running replicas: they apply the delete at once.
    restart = (
        "; start the auth server again" if config.auth_service.storage.type == "sqlite" else ""
    )
    print(f'lock "{name}" has been deleted (revision {revision}){restart}')
    return 0


def _check_config(path: Path) -> int:
    try:
        config = load_config(path)
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    services = []
    if config.auth_service.enabled:
        services.append(f"auth server on {config.auth_service.listen_addr}")
    if config.agent_service.enabled:
        services.append(f"agent on {config.agent_service.socket}")
    print(f"{path}: valid; `lockd start` runs: {', '.join(services) or 'nothing (none enabled)'}")
    return 0


def _health(config: Config, live: bool) -> int:
    try:
        results = probe(config, live=live)
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(f"{result.service}: {'ok' if result.ok else 'NOT OK'}: {result.detail}")
    return 0 if all(result.ok for result in results) else 1


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
        # Before anything is opened: one auth server per store, one agent per data dir.
        if command in ("auth", "start") and config.auth_service.enabled:
            stack.enter_context(ProcessLock.acquire(config.data_dir, "auth", AUTH_SERVER))
        if command in ("agent", "start") and config.agent_service.enabled:
            stack.enter_context(ProcessLock.acquire(config.data_dir, "agent", AGENT))
        audit = open_audit_sink(audit_path(config) or config.audit.sink)
        stack.callback(audit.close)
        # SIGHUP (systemctl reload, logrotate's postrotate): reopen the audit log file.
        loop.add_signal_handler(signal.SIGHUP, audit.reopen)
        health = ServiceHealth()
        health.notifier.status("starting")
        auth: AuthApp | None = None
        if command in ("auth", "start") and config.auth_service.enabled:
            registry = CollectorRegistry()
            auth = await stack.enter_async_context(
                await start_auth_server(config, clock, audit, registry)
            )
            ready = health.auth_check(auth)
            _serve_metrics(stack, registry, config.auth_service.metrics_addr, ready, health)
        if command in ("agent", "start") and config.agent_service.enabled:
            registry = CollectorRegistry()
            health.notifier.status("agent starting: joining or loading its identity")
            identity = await agent_identity(config, auth, clock)
            agent = await stack.enter_async_context(
                await start_agent(config, clock, audit, registry, identity)
            )
            ready = health.agent_check(agent)
            _serve_metrics(stack, registry, config.agent_service.metrics_addr, ready, health)
        tune_gc()
        async with health.running():
            await stop.wait()
            _log.info("stopping")


def _serve_metrics(
    stack: contextlib.AsyncExitStack,
    registry: CollectorRegistry,
    addr: str,
    ready: HealthCheck,
    health: ServiceHealth,
) -> None:
    register_process_metrics(registry, lambda: ready().ready)
    if not addr:
        return
    endpoint = MetricsEndpoint(registry, addr, ready=ready, live=health.liveness)
    try:
        endpoint.start()
    except OSError as error:
        raise UnavailableError(f"cannot serve metrics on {addr}: {error}") from None
    stack.callback(endpoint.stop)
    _log.info("serving metrics", url=endpoint.url)

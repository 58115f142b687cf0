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
from lockd.obs.audit import open_audit_sink
from lockd.obs.logging import configure_logging
from lockd.obs.metrics import MetricsEndpoint
from lockd.runtime.auth_app import AuthApp
from lockd.runtime.builders import agent_identity, start_agent, start_auth_server
from lockd.runtime.gc_tuning import tune_gc
from lockd.runtime.recovery import delete_lock_offline

_log = structlog.get_logger("lockd")

DEFAULT_CONFIG = Path("/etc/lockd.yaml")


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
    # `lockd bench` is dispatched before this parser (lockd.entrypoint); listed for --help.
    text = "measure lockd on this machine (lockd bench --help)"
    commands.add_parser("bench", help=text, description=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
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
        auth: AuthApp | None = None
        if command in ("auth", "start") and config.auth_service.enabled:
            registry = CollectorRegistry()
            auth = await stack.enter_async_context(
                await start_auth_server(config, clock, audit, registry)
            )
            _serve_metrics(stack, registry, config.auth_service.metrics_addr)
        if command in ("agent", "start") and config.agent_service.enabled:
            registry = CollectorRegistry()
            identity = await agent_identity(config, auth, clock)
            await stack.enter_async_context(
                await start_agent(config, clock, audit, registry, identity)
            )
            _serve_metrics(stack, registry, config.agent_service.metrics_addr)
        tune_gc()
        await stop.wait()
        _log.info("stopping")


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

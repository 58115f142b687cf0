"""The composition root: `lockd auth | agent | start --config FILE`.

Reads the config, builds the store, services and servers it enables, runs them until
SIGTERM or SIGINT, then stops them gracefully (exit 0). Configuration errors exit 2 with
`ERROR: <message>` on stderr.
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

from lockd import __version__
from lockd.api.auth_server import AuthServerApp, AuthServerSettings
from lockd.auth.watch import WatchSettings
from lockd.config import Config, audit_path, load_config
from lockd.domain.errors import LockdError
from lockd.domain.ports import SystemClock
from lockd.obs.audit import open_audit_sink
from lockd.obs.logging import configure_logging
from lockd.store import SqliteStore, build_store

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        _check_enabled(config, args.command)
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    configure_logging(config.log.format, config.log.level)
    try:
        asyncio.run(run(config, args.command))
    except LockdError as error:
        _log.error("lockd failed", error=str(error))
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


def _check_enabled(config: Config, command: str) -> None:
    from lockd.domain.errors import ValidationError

    if command == "auth" and not config.auth_service.enabled:
        raise ValidationError("auth_service is not enabled in the config")
    if command == "agent" and not config.agent_service.enabled:
        raise ValidationError("agent_service is not enabled in the config")


async def run(config: Config, command: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        if command in ("auth", "start") and config.auth_service.enabled:
            auth = build_auth_server(config)
            await auth.start()
            stack.push_async_callback(auth.stop)
        await stop.wait()
        _log.info("stopping")


def build_auth_server(config: Config) -> AuthServerApp:
    auth = config.auth_service
    storage = auth.storage
    store = (
        SqliteStore(storage.path)
        if storage.type == "sqlite"
        else build_store(storage.type, config.data_dir)
    )
    audit = open_audit_sink(audit_path(config) or config.audit.sink)
    settings = AuthServerSettings(
        cluster_name=config.cluster_name,
        listen_addr=auth.listen_addr,
        admin_socket=auth.admin_socket,
        static_locking_mode=auth.authentication.locking_mode,
        watch=WatchSettings(heartbeat_interval=auth.heartbeat_interval),
    )
    return AuthServerApp(settings, store, SystemClock(), audit)


if __name__ == "__main__":
    sys.exit(main())

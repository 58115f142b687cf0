"""How lockctl reaches the auth server.

Local (the only mode today): `-c/--config FILE`, else `$LOCKD_CONFIG`, else
`/etc/lockd.yaml`; lockctl reads the auth server's config and talks to its admin socket
(`auth_service.admin_socket`, mode 0600), which grants full rights (`created_by: Admin`).
Run it on the auth host as the user that runs `lockd`.

Remote (`--auth-server host:port --identity FILE`) is designed but refused: it needs the
mTLS identities of the security issue, and lockctl will not talk to the auth server's
TCP port without them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from lockd.cli.errors import UsageError
from lockd.client import AuthClient, ServerUnreachableError
from lockd.config import Config, load_config
from lockd.domain.errors import ValidationError

CONFIG_ENV = "LOCKD_CONFIG"
DEFAULT_CONFIG = Path("/etc/lockd.yaml")
PING_TIMEOUT = 5.0
REMOTE_UNSUPPORTED = (
    "remote access (--auth-server/--identity) needs the security issue's mTLS identities; "
    "use -c on the auth host"
)


def add_connection_flags(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global flags; `suppress` for subcommands, so they may come after the command
    (`lockctl get locks -c lockd.yaml`) without resetting a value given before it."""
    default: object = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection")
    group.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=default,
        help=f"the auth server's lockd config (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG});"
        " lockctl uses its admin socket",
    )
    group.add_argument(
        "--auth-server",
        metavar="HOST:PORT",
        default=default,
        help="a remote auth server (not available yet: needs mTLS identities)",
    )
    group.add_argument(
        "--identity",
        metavar="FILE",
        default=default,
        help="identity file for --auth-server (not available yet)",
    )


def config_path(args: argparse.Namespace) -> Path:
    explicit = getattr(args, "config", None)
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV, "")
    return Path(from_env) if from_env else DEFAULT_CONFIG


def resolve(args: argparse.Namespace) -> Path:
    """The admin socket to talk to; UsageError for a refused mode or a bad config."""
    if getattr(args, "auth_server", None) or getattr(args, "identity", None):
        raise UsageError(REMOTE_UNSUPPORTED)
    path = config_path(args)
    try:
        config = load_config(path)
    except ValidationError as error:
        hint = ""
        if not path.exists():
            hint = f" (pass the auth server's config with -c FILE or ${CONFIG_ENV})"
        raise UsageError(f"{error}{hint}") from None
    return admin_socket(config, path)


def admin_socket(config: Config, path: Path) -> Path:
    if not config.auth_service.enabled:
        raise UsageError(
            f"{path}: auth_service is not enabled in this config; lockctl needs the auth "
            "server's config (run it on the auth host)"
        )
    return config.auth_service.admin_socket


class UnreachableError(ServerUnreachableError):
    """The admin socket did not answer; the message names the socket and the reason."""


@asynccontextmanager
async def connect(socket: Path) -> AsyncIterator[AuthClient]:
    """An AuthClient on the admin socket, after checking that a server answers there."""
    async with AuthClient.connect(f"unix:{socket}") as client:
        try:
            await client.ping(PING_TIMEOUT)
        except ServerUnreachableError as error:
            raise UnreachableError(
                f"cannot reach the auth server at {socket}: {error}{_hint(socket, str(error))}"
            ) from None
        yield client


def _hint(socket: Path, reason: str) -> str:
    if not socket.exists():
        return " (is the auth server running? start it with: lockd auth --config FILE)"
    if "Permission denied" in reason:
        return " (the admin socket is mode 0600: run lockctl as the user that runs lockd)"
    if "refused" in reason:
        return " (a socket file is there but no auth server listens on it)"
    return ""

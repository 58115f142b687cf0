"""How lockctl reaches the auth server: the local admin socket, or a remote one over mTLS.

Local (the default): `-c/--config FILE`, else `$LOCKD_CONFIG`, else `/etc/lockd.yaml`;
lockctl reads the auth server's config and talks to its admin socket
(`auth_service.admin_socket`, mode 0600), which grants full rights (`created_by: Admin`).
Run it on the auth host as the user that runs `lockd`.

Remote: `--auth-server HOST:PORT --identity FILE` talks to the auth server's
`listen_addr` over mutual TLS, as the user named in the identity file (`lockctl auth
sign` writes one), with that user's roles as they were when the file was signed. The
two flags go together, and not with `-c`. The file is checked before anything is sent:
unreadable or malformed exits 2, an expired certificate exits 1.
"""

from __future__ import annotations

import argparse
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lockd.cli.exit_codes import UsageError
from lockd.cli.timeflags import positive_duration
from lockd.client import AuthClient, IdentityFile, ServerUnreachableError
from lockd.config import Config, load_config
from lockd.domain.addresses import parse_host_port
from lockd.domain.errors import (
    DeadlineError,
    LockdError,
    UnauthenticatedError,
    ValidationError,
)
from lockd.domain.timeparse import format_rfc3339
from lockd.pki import identity_of

CONFIG_ENV = "LOCKD_CONFIG"
DEFAULT_CONFIG = Path("/etc/lockd.yaml")
PING_TIMEOUT = 5.0
DEFAULT_TIMEOUT = "30s"


def call_timeout(args: argparse.Namespace) -> float:
    """`--timeout` in seconds (UsageError for a bad duration)."""
    text = getattr(args, "timeout", None) or DEFAULT_TIMEOUT
    return positive_duration("--timeout", text).total_seconds()


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
        help="a remote auth server (its auth_service.listen_addr), reached over mTLS; "
        "needs --identity",
    )
    group.add_argument(
        "--timeout",
        metavar="DURATION",
        default=default,
        help=f"deadline of each call to the auth server (default {DEFAULT_TIMEOUT}); a "
        "server that does not answer in time (e.g. its disk is frozen) fails the command",
    )
    group.add_argument(
        "--identity",
        "-i",
        metavar="FILE",
        default=default,
        help="identity file for --auth-server, from `lockctl auth sign` on the auth host",
    )


@dataclass(frozen=True, slots=True)
class Local:
    """The admin socket named by the auth server's config."""

    socket: Path
    config: Config


@dataclass(frozen=True, slots=True)
class Remote:
    """An auth server's TCP port, as the user of an identity file."""

    address: str
    identity_path: Path
    identity: IdentityFile


Endpoint = Local | Remote


def config_path(args: argparse.Namespace) -> Path:
    explicit = getattr(args, "config", None)
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV, "")
    return Path(from_env) if from_env else DEFAULT_CONFIG


def resolve(args: argparse.Namespace) -> Endpoint:
    """Where to connect; UsageError for bad flags or config, exit 1 for a stale identity."""
    if (
        getattr(args, "auth_server", None) is not None
        or getattr(args, "identity", None) is not None
    ):
        return resolve_remote(args)
    path = config_path(args)
    try:
        config = load_config(path)
    except ValidationError as error:
        hint = ""
        if not path.exists():
            hint = f" (pass the auth server's config with -c FILE or ${CONFIG_ENV})"
        raise UsageError(f"{error}{hint}") from None
    return Local(admin_socket(config, path), config)


def admin_socket(config: Config, path: Path) -> Path:
    if not config.auth_service.enabled:
        raise UsageError(
            f"{path}: auth_service is not enabled in this config; lockctl needs the auth "
            "server's config (run it on the auth host)"
        )
    return config.auth_service.admin_socket


def resolve_remote(args: argparse.Namespace, now: datetime | None = None) -> Remote:
    address: str | None = getattr(args, "auth_server", None)
    identity: str | None = getattr(args, "identity", None)
    if address is None:
        raise UsageError("--identity needs --auth-server HOST:PORT (the auth server's listen_addr)")
    if identity is None:
        raise UsageError(
            "--auth-server needs --identity FILE (an identity file: on the auth host, "
            "lockctl auth sign --user=NAME --out=FILE)"
        )
    if getattr(args, "config", None):
        raise UsageError(
            "use either -c/--config (the admin socket, on the auth host) or "
            "--auth-server with --identity (remote), not both"
        )
    check_address(address)
    if not identity:
        raise UsageError("--identity must name a file")
    path = Path(identity)
    try:
        loaded = IdentityFile.load(path)
    except ValidationError as error:
        raise UsageError(f"--identity: {error}") from None
    check_valid(loaded, path, now or datetime.now(UTC))
    return Remote(address, path, loaded)


def check_address(address: str) -> None:
    try:
        parse_host_port(address)
    except ValidationError:
        raise UsageError(
            f'--auth-server: "{address}" is not HOST:PORT (e.g. auth.example.com:3025, '
            "the auth server's listen_addr)"
        ) from None


def check_valid(identity: IdentityFile, path: Path, now: datetime) -> None:
    """An expired (or not yet valid) certificate is refused here, with what to do."""
    cert = identity.certificate()
    try:
        user = identity_of(cert).name
    except LockdError:
        user = "NAME"
    if now >= cert.not_valid_after_utc:
        raise UnauthenticatedError(
            f"the identity in {path} expired at {format_rfc3339(cert.not_valid_after_utc)}; "
            f"sign a new one on the auth host: lockctl auth sign --user={user} --out={path}"
        )
    if now < cert.not_valid_before_utc:
        raise UnauthenticatedError(
            f"the identity in {path} is not valid before "
            f"{format_rfc3339(cert.not_valid_before_utc)}; check this machine's clock"
        )


def notes(endpoint: Endpoint) -> list[str]:
    """Warnings to show before connecting (an identity file others can read)."""
    if not isinstance(endpoint, Remote):
        return []
    try:
        mode = stat.S_IMODE(endpoint.identity_path.stat().st_mode)
    except OSError:
        return []
    if mode & 0o077:
        return [
            f"warning: {endpoint.identity_path} holds a private key but is readable by "
            f"others (mode {mode:04o}); chmod 600 it"
        ]
    return []


class UnreachableError(ServerUnreachableError):
    """The auth server did not answer; the message names where and why."""


@asynccontextmanager
async def connect(
    endpoint: Endpoint, call_deadline: float | None = None
) -> AsyncIterator[AuthClient]:
    """An AuthClient for the endpoint, after checking that an auth server answers there;
    `call_deadline` is every call's deadline (seconds)."""
    if isinstance(endpoint, Local):
        client = AuthClient.connect(f"unix:{endpoint.socket}", timeout=call_deadline)
    else:
        client = AuthClient.connect_with_identity(
            endpoint.address, endpoint.identity, timeout=call_deadline
        )
    async with client:
        try:
            await client.ping(PING_TIMEOUT)
        except ServerUnreachableError as error:
            raise UnreachableError(_unreachable(endpoint, str(error))) from None
        except LockdError as error:
            if isinstance(endpoint, Remote) and str(error).startswith("UNIMPLEMENTED"):
                raise UnreachableError(
                    f"{endpoint.address} does not serve the auth API (is it the join port, "
                    "auth_service.join_listen_addr? use auth_service.listen_addr)"
                ) from None
            raise
        try:
            yield client
        except DeadlineError as error:
            where = endpoint.socket if isinstance(endpoint, Local) else endpoint.address
            raise DeadlineError(
                f"the auth server at {where} gave {error} (--timeout={call_deadline:g}s); is its "
                "store stalled? `lockctl status` shows the store's health"
            ) from None


def _unreachable(endpoint: Endpoint, reason: str) -> str:
    if isinstance(endpoint, Local):
        where, explained = str(endpoint.socket), reason + _local_hint(endpoint.socket, reason)
    else:
        where, explained = endpoint.address, remote_reason(reason, endpoint.identity_path)
    return f"cannot reach the auth server at {where}: {explained}"


def _local_hint(socket: Path, reason: str) -> str:
    if not socket.exists():
        return " (is the auth server running? start it with: lockd auth --config FILE)"
    if "Permission denied" in reason:
        return " (the admin socket is mode 0600: run lockctl as the user that runs lockd)"
    if "refused" in reason:
        return " (a socket file is there but no auth server listens on it)"
    return ""


def remote_reason(reason: str, identity: Path) -> str:
    """gRPC's transport error, shortened to its cause, with what it most likely means."""
    if "handshake failed" in reason.lower():
        detail = reason.rsplit("OPENSSL_internal:", 1)[-1].strip()
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            hint = (
                f"the server's certificate is not from the cluster CA in {identity}: is the "
                "identity from another cluster? compare CA pins with lockctl status"
            )
        elif "WRONG_VERSION_NUMBER" in reason:
            hint = "the server does not speak TLS there; does it run with auth_service.insecure?"
        else:
            hint = ""
        return f"TLS handshake failed: {detail}" + (f" ({hint})" if hint else "")
    if "Peer name" in reason:
        detail = reason[reason.index("Peer name") :]
        return (
            f"TLS: {detail} (dial a name the server's certificate has, or add this one to "
            "auth_service.tls_names and restart the auth server)"
        )
    if "Socket closed" in reason or "Connection reset" in reason:
        return (
            f"the server closed the connection: it refused the certificate in {identity} "
            "(expired, or issued by another cluster's CA); sign a new identity on the auth "
            "host with lockctl auth sign"
        )
    if "Connection refused" in reason:
        return f"{reason} (is the auth server running, with auth_service.listen_addr there?)"
    return reason

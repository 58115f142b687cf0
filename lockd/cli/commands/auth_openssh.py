"""`lockctl auth sign --format=openssh`: an OpenSSH key and user certificate for a user.

A fresh Ed25519 key is generated here (it never leaves this machine); the auth server
certifies its public key with the cluster's SSH user CA: key ID = the user, the user's
roles now (and --mfa-device / --device when given) in extensions, --logins as the
principals sshd checks. Written next to each other, as `ssh -i PATH` expects them:
PATH (private key, mode 0600), PATH.pub and PATH-cert.pub. The CA's public key, for
sshd's TrustedUserCAKeys, is printed too (docs/ssh.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, UsageError
from lockd.cli.parser import Runner
from lockd.client import AuthClient
from lockd.domain.errors import ValidationError
from lockd.domain.lock import quote, validate_name
from lockd.domain.timeparse import format_rfc3339


def cert_path(out: Path) -> Path:
    return out.with_name(out.name + "-cert.pub")


def public_path(out: Path) -> Path:
    return out.with_name(out.name + ".pub")


def parse_logins(text: str | None, user: str) -> tuple[str, ...]:
    """--logins a,b (default: the user's own name, as a login of the same name)."""
    logins = tuple(login.strip() for login in (text or user).split(",") if login.strip())
    if not logins:
        raise UsageError("--logins: name at least one OS login")
    for login in logins:
        try:
            validate_name(login, "login")
        except ValidationError as error:
            raise UsageError(f"--logins: {error}") from None
    return logins


def written_files(out: Path) -> tuple[Path, ...]:
    return (out, public_path(out), cert_path(out))


def prepare_openssh(
    user: str,
    ttl: timedelta,
    out: Path,
    overwrite: bool,
    logins: tuple[str, ...],
    devices: tuple[str, str],
    write_private: Callable[[Path, bytes, bool], None],
) -> Runner:
    """The runner; the caller has checked every path of `written_files(out)`."""

    async def run(client: AuthClient, console: Console) -> int:
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        signed = await client.sign_ssh_user_certificate(user, ttl, public, logins, *devices)
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        write_private(out, private, overwrite)
        write_private(public_path(out), public + f" {user}\n".encode(), overwrite)
        write_private(cert_path(out), signed.certificate + b"\n", overwrite)
        roles = ",".join(signed.roles) or "none"
        until = format_rfc3339(signed.not_after) if signed.not_after else "unknown"
        console.result(
            f"The OpenSSH certificate for user {quote(user)} (roles: {roles}; logins: "
            f"{','.join(logins)}) is in {cert_path(out)}, its key in {out}; valid until {until}."
        )
        console.result(
            "The cluster's SSH user CA (a line for sshd's TrustedUserCAKeys): "
            + signed.ca_public_key.decode()
        )
        return EXIT_OK

    return run

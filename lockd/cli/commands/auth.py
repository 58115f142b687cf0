"""`lockctl auth sign`: issue a user identity file for remote lockctl use (tctl auth sign).

The key is generated here and never leaves this machine: the auth server signs a
certificate request for it, naming the user and the roles the user holds now. The file
holds the private key, the certificate and the cluster CA's certificate (PEM blocks in
that order, like Teleport's identity file) and is written mode 0600. An existing file
is refused unless --overwrite is given; then it is replaced atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lockd.cli.commands.auth_db import db_files, parse_attributes, prepare_db
from lockd.cli.commands.auth_openssh import parse_logins, prepare_openssh, written_files
from lockd.cli.commands.auth_x509 import sign_x509
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, OperationError, UsageError
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.timeflags import positive_duration
from lockd.client import AuthClient, IdentityFile
from lockd.domain.errors import ValidationError
from lockd.domain.lock import quote, validate_name
from lockd.durable_files import write_durably
from lockd.pki import DeviceAttributes

DEFAULT_TTL = "12h"

EXAMPLES = """
lockctl auth sign --user=alice --out=alice.pem
lockctl auth sign --user=alice --ttl=1h --out=alice.pem --overwrite
lockctl auth sign --format=openssh --user=alice --logins=alice,deploy --out=alice-ssh
lockctl auth sign --format=db --user=alice --out=alice   # alice.key, alice.crt, alice.cas
lockctl auth sign --format=db --user=alice --device=laptop-7 --access-request=req-42 --out=alice
# then, from any machine that reaches the auth server's listen_addr:
lockctl --auth-server=auth.example.com:3025 --identity=alice.pem lock --user=foo@example.com
"""

SIGN_DESCRIPTION = f"""\
Issue an identity file for a user: a fresh private key (generated here; it never leaves
this machine), a certificate from the cluster CA naming the user and the roles the user
holds now, and the CA's certificate. lockctl uses it with --auth-server HOST:PORT
--identity FILE to act as that user over mutual TLS.

Roles are fixed when the file is signed: after `lockctl users update`, sign again
(Teleport's "sign out and sign in again"). --ttl (default {DEFAULT_TTL}, at most 720h) is how long
the identity is valid. The file is written mode 0600; an existing file is refused
unless --overwrite is given. Issuing identities needs create and update on user (the
admin socket has them). Prints:
  The identity for user "<name>" (roles: <roles>) is in <path>; valid until <RFC3339>."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "auth",
        summary="issue user identities for remote lockctl use",
        description="Issue identities signed by the cluster CA (see lockctl auth sign --help).",
        examples=EXAMPLES,
    )
    auth = parser.add_subparsers(dest="auth_command", metavar="COMMAND", required=True)
    sign = add_command(
        auth,
        "sign",
        summary="write an identity file for a user",
        description=SIGN_DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare_sign,
    )
    sign.add_argument("--user", required=True, metavar="NAME", help="an existing user")
    sign.add_argument("--out", required=True, metavar="PATH", help="the identity file to write")
    sign.add_argument(
        "--ttl", default=DEFAULT_TTL, metavar="DURATION", help=f"validity (default {DEFAULT_TTL})"
    )
    sign.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    sign.add_argument(
        "--format",
        choices=("identity", "openssh", "db"),
        default="identity",
        help="identity: a lockctl identity file (default); openssh: an SSH key and "
        "certificate (PATH, PATH.pub, PATH-cert.pub) for sshd with lockd (docs/ssh.md); "
        "db: PATH.key, PATH.crt, PATH.cas for psql through lockd proxy (docs/proxy.md)",
    )
    sign.add_argument("--logins", metavar="A,B", help="openssh: OS logins (default: the user)")
    sign.add_argument(
        "--mfa-device", default="", metavar="ID", help="openssh, db: the MFA device to name"
    )
    sign.add_argument(
        "--device", default="", metavar="ID", help="openssh, db: the trusted device to name"
    )
    sign.add_argument(
        "--access-request",
        action="append",
        default=[],
        metavar="ID",
        help="db: an access request the certificate is issued for (repeat for several)",
    )


def prepare_sign(args: argparse.Namespace) -> Runner:
    user: str = args.user
    try:
        validate_name(user, "user")
    except ValidationError as error:
        raise UsageError(f"--user: {error}") from None
    ttl = positive_duration("--ttl", args.ttl)
    out = Path(args.out)
    overwrite: bool = args.overwrite
    if args.access_request and args.format != "db":
        raise UsageError("--access-request applies to --format=db only")
    if args.format == "openssh":
        logins = parse_logins(args.logins, user)
        for path in written_files(out):
            check_destination(path, overwrite)
        devices = (args.mfa_device, args.device)
        return prepare_openssh(user, ttl, out, overwrite, logins, devices, write_private)
    if args.format == "db":
        for path in db_files(out):
            check_destination(path, overwrite)
        attributes = parse_attributes(args.mfa_device, args.device, args.access_request)
        return prepare_db(user, ttl, out, overwrite, attributes, write_private)
    if args.mfa_device or args.device:
        # The auth server takes a caller's identity from user and roles only.
        raise UsageError("--mfa-device and --device apply to --format=openssh and db")
    check_destination(out, overwrite)

    async def run(client: AuthClient, console: Console) -> int:
        signed = await sign_x509(client, user, ttl, DeviceAttributes())
        identity = IdentityFile(signed.key_pem, signed.certificate_pem, signed.ca_certificate_pem)
        write_private(out, identity.render(), overwrite)
        console.result(
            f"The identity for user {quote(user)} (roles: {signed.roles_text}) is in {out}; "
            f"valid until {signed.until}."
        )
        return EXIT_OK

    return run


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuse before signing anything: an existing file (without --overwrite), a directory,
    a missing parent directory."""
    if path.is_dir():
        raise UsageError(f"--out: {path} is a directory")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise UsageError(f"--out: {path} exists; pass --overwrite to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"--out: cannot write {path}: no directory {parent}")


def write_private(path: Path, data: bytes, overwrite: bool) -> None:
    """Write `data` to a file of mode 0600 (atomically replacing one with overwrite)."""
    try:
        written = write_durably(path, data, mode=0o600, replace=overwrite)
    except OSError as error:
        raise OperationError(f"cannot write {path}: {error.strerror or error}") from None
    if not written:
        raise OperationError(f"{path} exists (created meanwhile); nothing written")

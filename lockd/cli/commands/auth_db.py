"""`lockctl auth sign --format=db`: a key, certificate and CA file for PostgreSQL clients.

The same X.509 user certificate as the identity file, written as the three files libpq
takes to connect through `lockd proxy` (docs/proxy.md), named as Teleport's
`tctl auth sign --format=db` names them: PATH.key (mode 0600) for `sslkey`, PATH.crt for
`sslcert`, PATH.cas (the cluster CA) for `sslrootcert`. --mfa-device, --device and
--access-request name what the certificate is issued for: locks on them then hit the
sessions it opens, and a lock in force on one refuses the signing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from lockd.cli.commands.auth_x509 import sign_x509
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, UsageError
from lockd.cli.parser import Runner
from lockd.client import AuthClient
from lockd.domain.errors import ValidationError
from lockd.domain.lock import quote, validate_name
from lockd.pki import DeviceAttributes


def db_files(out: Path) -> tuple[Path, Path, Path]:
    """(key, certificate, CA) paths for --out PATH."""
    key, cert, ca = (out.with_name(out.name + suffix) for suffix in (".key", ".crt", ".cas"))
    return key, cert, ca


def parse_attributes(mfa_device: str, device: str, access_requests: list[str]) -> DeviceAttributes:
    """--mfa-device, --device and --access-request (repeated), checked as names."""
    named = [("--mfa-device", "mfa_device", mfa_device), ("--device", "device", device)]
    named = [item for item in named if item[2]]  # "" (the default): not named
    named += [("--access-request", "access_request", request) for request in access_requests]
    for flag, kind, value in named:
        try:
            validate_name(value, kind)
        except ValidationError as error:
            raise UsageError(f"{flag}: {error}") from None
    if len(set(access_requests)) != len(access_requests):
        raise UsageError("--access-request: an access request is named twice")
    return DeviceAttributes(mfa_device, device, tuple(access_requests))


def prepare_db(
    user: str,
    ttl: timedelta,
    out: Path,
    overwrite: bool,
    attributes: DeviceAttributes,
    write_private: Callable[[Path, bytes, bool], None],
) -> Runner:
    """The runner; the caller has checked every path of `db_files(out)`."""
    key_path, cert_path, ca_path = db_files(out)

    async def run(client: AuthClient, console: Console) -> int:
        signed = await sign_x509(client, user, ttl, attributes)
        # All three mode 0600: libpq refuses a key that others may read.
        write_private(key_path, signed.key_pem, overwrite)
        write_private(cert_path, signed.certificate_pem, overwrite)
        write_private(ca_path, signed.ca_certificate_pem, overwrite)
        console.result(
            f"The database client files for user {quote(user)} (roles: {signed.roles_text}) "
            f"are {key_path}, {cert_path} and {ca_path}; valid until {signed.until}.\n"
            f'Connect through lockd proxy with: psql "host=PROXY port=PORT dbname=DB '
            f"user={user} sslmode=verify-full sslrootcert={ca_path} sslcert={cert_path} "
            f'sslkey={key_path}"'
        )
        return EXIT_OK

    return run

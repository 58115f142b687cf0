"""`lockd proxy server-cert`: the proxy's own TLS certificate, from the cluster CA.

Run on the auth host (it reads `ca.key` from the auth server's data dir, as `lockd
recover` does; the server may be running). psql then verifies the proxy with the same
CA file it got from `lockctl auth sign --format=db` (`sslmode=verify-full`), so the
certificate names every host name and address clients dial (`--host`, repeated).
Writes PATH.key (mode 0600) and PATH.crt; an existing file needs --overwrite.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lockd.config import load_config
from lockd.domain.errors import LockdError, ValidationError
from lockd.domain.timeparse import format_rfc3339, parse_duration
from lockd.durable_files import write_durably
from lockd.pki import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    CertIdentity,
    ClusterCA,
    IdentityKind,
    cert_pem,
    key_pem,
    new_key,
)

DEFAULT_TTL = "8760h"
MAX_TTL = timedelta(days=366)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockd proxy server-cert",
        description="Issue the proxy's TLS server certificate from the cluster CA "
        "(on the auth host).",
        epilog="Example: lockd proxy server-cert --config /etc/lockd.yaml "
        "--host db-proxy.example.com --out /etc/lockd/proxy",
    )
    parser.add_argument("-c", "--config", type=Path, required=True, help="the auth server's config")
    parser.add_argument("--host", action="append", required=True, help="a name clients dial")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.key and OUT.crt")
    parser.add_argument("--ttl", default=DEFAULT_TTL, help=f"validity (default {DEFAULT_TTL})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    try:
        key_path, cert_path, until = issue(
            args.config, tuple(args.host), args.out, args.ttl, args.overwrite
        )
    except (LockdError, OSError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValidationError) else 1
    print(
        f"The proxy's certificate for {', '.join(args.host)} is in {cert_path}, its key in "
        f"{key_path}; valid until {format_rfc3339(until)}."
    )
    return 0


def issue(
    config_path: Path, hosts: tuple[str, ...], out: Path, ttl_text: str, overwrite: bool
) -> tuple[Path, Path, datetime]:
    ttl = parse_duration(ttl_text)
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValidationError(f"--ttl must be positive and at most {MAX_TTL.days * 24}h")
    data_dir = load_config(config_path).data_dir
    if not (data_dir / CA_KEY_FILE).exists() or not (data_dir / CA_CERT_FILE).exists():
        raise ValidationError(f"no cluster CA in {data_dir} (start the auth server once first)")
    key_path, cert_path = out.with_name(out.name + ".key"), out.with_name(out.name + ".crt")
    for path in (key_path, cert_path):
        if path.exists() and not overwrite:
            raise ValidationError(f"{path} exists; pass --overwrite to replace it")
    now = datetime.now(UTC)
    ca = ClusterCA.load_or_create(data_dir, "", now)
    key = new_key()
    identity = CertIdentity(IdentityKind.SERVER, "lockd-proxy")
    certificate = ca.issue(key.public_key(), identity, now, ttl, hosts)
    write_durably(key_path, key_pem(key), mode=0o600, replace=True)
    write_durably(cert_path, cert_pem(certificate) + ca.cert_pem, mode=0o644, replace=True)
    return key_path, cert_path, certificate.not_valid_after_utc

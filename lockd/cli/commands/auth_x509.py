"""Signing an X.509 user certificate for `lockctl auth sign` (identity file and --format=db).

The key is generated here and never leaves this machine: the auth server signs a
certificate request for it, naming the user and the roles the user holds now (and, for
--format=db, the device attributes asked for in the request's subject, `lockd.pki`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from lockd.cli.exit_codes import OperationError
from lockd.client import AuthClient
from lockd.domain.errors import LockdError
from lockd.domain.timeparse import format_rfc3339
from lockd.pki import DeviceAttributes, key_pem, make_csr, new_key

INSECURE_CLUSTER = (
    "the auth server has no CA (it runs with auth_service.insecure: true), so it issues "
    "no identities"
)


@dataclass(frozen=True, slots=True)
class SignedX509:
    key_pem: bytes
    certificate_pem: bytes
    ca_certificate_pem: bytes
    roles: tuple[str, ...]
    until: str  # RFC3339, or "unknown"

    @property
    def roles_text(self) -> str:
        return ",".join(self.roles) or "none"


async def sign_x509(
    client: AuthClient, user: str, ttl: timedelta, attributes: DeviceAttributes
) -> SignedX509:
    key = new_key()
    try:
        signed = await client.sign_user_identity(user, ttl, make_csr(key, user, attributes))
    except LockdError as error:
        # An insecure auth server serves no IdentityService at all.
        if str(error).startswith("UNIMPLEMENTED"):
            raise OperationError(INSECURE_CLUSTER) from None
        raise
    until = format_rfc3339(signed.not_after) if signed.not_after else "unknown"
    return SignedX509(
        key_pem(key), signed.certificate_pem, signed.ca_certificate_pem, signed.roles, until
    )

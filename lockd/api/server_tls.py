"""mTLS on the server side: server credentials, and who the caller is from its certificate.

The auth port requires a client certificate signed by the cluster CA at the TLS
handshake (grpc-python can only require client certificates for a whole port, not per
method; the join call therefore has its own port that serves only JoinAgent). Each RPC
then maps the verified certificate to a `Caller`: a user with the roles the certificate
names, or an agent with its server_id.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta

import grpc
from cryptography import x509

from lockd.api.handler import CallerResolver, Context
from lockd.domain.errors import UnauthenticatedError
from lockd.domain.ports import Clock
from lockd.domain.rbac import Caller
from lockd.pki import (
    CertIdentity,
    ClusterCA,
    IdentityKind,
    cert_pem,
    identity_of,
    key_pem,
    new_key,
)

NO_CERTIFICATE = "a client certificate from the cluster CA is required"


def server_credentials(
    key_pem: bytes, cert_pem: bytes, ca_pem: bytes, *, require_client_cert: bool
) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)],
        root_certificates=ca_pem if require_client_cert else None,
        require_client_auth=require_client_cert,
    )


SERVER_CERT_TTL = timedelta(days=365)


def server_identity(ca: ClusterCA, hosts: Iterable[str], now: datetime) -> tuple[bytes, bytes]:
    """A fresh key and server certificate chain for these names (plus localhost), as PEM."""
    key = new_key()
    names = [
        host
        for host in (*hosts, "localhost", "127.0.0.1", "::1")
        if host not in ("", "0.0.0.0", "::")
    ]
    cert = ca.issue(
        key.public_key(), CertIdentity(IdentityKind.SERVER, "auth"), now, SERVER_CERT_TTL, names
    )
    # The chain includes the CA so that a joining agent can check it against its pin.
    return key_pem(key), cert_pem(cert) + ca.cert_pem


@functools.lru_cache(maxsize=4096)
def _parse(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def caller_from_certificate(pem: bytes, now: datetime) -> Caller:
    cert = _parse(pem)
    # Connections outlive certificates: check validity on every call, not just at handshake.
    if now >= cert.not_valid_after_utc:
        raise UnauthenticatedError("the client certificate has expired")
    identity = identity_of(cert)
    if identity.kind is IdentityKind.USER:
        return Caller.user(identity.name, identity.roles)
    if identity.kind is IdentityKind.AGENT:
        return Caller.agent(identity.name)
    raise UnauthenticatedError(f"a {identity.kind.value} certificate cannot call this API")


def tls_caller(clock: Clock) -> CallerResolver:
    """Resolves the caller named by the verified client certificate of each RPC, checking
    the certificate's expiry against `clock`."""

    def caller_of(context: Context) -> Caller:
        pem = next(iter(context.auth_context().get("x509_pem_cert", ())), None)
        if pem is None:
            raise UnauthenticatedError(NO_CERTIFICATE)
        return caller_from_certificate(pem, clock.now())

    return caller_of


def anonymous_caller(_context: Context) -> Caller:
    """On the join port only JoinAgent, which needs no caller, is allowed."""
    raise UnauthenticatedError("only JoinAgent is served on the join port")

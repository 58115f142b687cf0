"""Who a client is: the TLS context that demands a cluster certificate, and its identity.

`client_tls_context` requires a client certificate at the handshake and verifies it
against the cluster CA (chain, validity period, client-auth usage), so a foreign, expired
or missing certificate never gets past TLS. `identity_from_certificate` then reads the
subject the way the auth server does (`lockd.pki.identity_of`: CN = user, O = roles,
and the MFA device, trusted device and access requests when the certificate names them)
and accepts only user certificates.
The database user the proxy logs in as upstream is the session's `login`, so a `login`
lock on it hits every connection that uses it.
"""

from __future__ import annotations

import ssl

from cryptography import x509

from lockd.domain.errors import UnauthenticatedError, ValidationError
from lockd.domain.identity import Identity
from lockd.pki import IdentityKind, identity_of
from lockd.proxy.proxy_config import ProxyTlsConfig


def client_tls_context(config: ProxyTlsConfig) -> ssl.SSLContext:
    """The proxy's server-side TLS: its own certificate, client certificates required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(config.cert_file), str(config.key_file))
        context.load_verify_locations(cafile=str(config.client_ca_file))
    except (OSError, ssl.SSLError) as error:
        raise ValidationError(f"cannot load the proxy's TLS files: {error}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def identity_from_certificate(der: bytes | None, login: str = "") -> Identity:
    """The session identity of a verified client certificate (DER), with `login`."""
    if not der:
        raise UnauthenticatedError("a client certificate from the cluster CA is required")
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        raise UnauthenticatedError("the client certificate cannot be parsed") from None
    named = identity_of(certificate)
    if named.kind is not IdentityKind.USER:
        raise UnauthenticatedError(
            f"only user certificates may connect through the proxy, not {named.kind.value}"
        )
    return named.attributes.identity(named.name, named.roles, login)

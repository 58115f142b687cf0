"""Channel credentials for the client side: trust the cluster CA, present an identity."""

from __future__ import annotations

import grpc


def client_credentials(
    ca_pem: bytes, key_pem: bytes | None = None, cert_pem: bytes | None = None
) -> grpc.ChannelCredentials:
    """TLS that trusts `ca_pem` (the cluster CA) and, with a key and certificate, mTLS."""
    return grpc.ssl_channel_credentials(ca_pem, key_pem, cert_pem)

"""The agent's identity: join with a one-time token and the CA pin, keep and renew it.

Joining (Teleport's flow): the agent reads the server's certificate chain without
trusting it, accepts the chain only if a certificate in it has the configured CA pin
(`sha256:` of its SPKI) and that CA signed the server's certificate; then it calls
JoinAgent over TLS verified against that CA, sending the token and a CSR for a key that
never leaves the data dir. The certificate is renewed over mTLS before it expires.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from lockd.auth.certificates import DEFAULT_AGENT_CERT_TTL
from lockd.client.tls_credentials import client_credentials
from lockd.domain.addresses import split_host_port
from lockd.domain.errors import LockdError, UnauthenticatedError
from lockd.pki import (
    CertIdentity,
    ClusterCA,
    IdentityKind,
    cert_pem,
    key_pem,
    make_csr,
    new_key,
    spki_pin,
)
from lockd.v1 import identity_service_pb2 as pb
from lockd.v1 import identity_service_pb2_grpc as identity_grpc
from lockd.wire.status_table import error_for

_log = structlog.get_logger("lockd.agent.identity")

KEY_FILE = "agent.key"
CERT_FILE = "agent.crt"
CA_FILE = "agent-ca.crt"
RENEW_AT = 2 / 3  # of the certificate's lifetime


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    def credentials(self) -> grpc.ChannelCredentials:
        return client_credentials(self.ca_pem, self.key_pem, self.cert_pem)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def valid_at(self, now: datetime) -> bool:
        cert = self.certificate()
        return cert.not_valid_before_utc <= now < cert.not_valid_after_utc

    def renew_after(self) -> datetime:
        cert = self.certificate()
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        return start + (end - start) * RENEW_AT

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, data, mode in (
            (KEY_FILE, self.key_pem, 0o600),
            (CERT_FILE, self.cert_pem, 0o644),
            (CA_FILE, self.ca_pem, 0o644),
        ):
            temporary = directory / f".{name}.tmp"
            temporary.touch(mode=mode)
            temporary.write_bytes(data)
            temporary.replace(directory / name)

    @classmethod
    def load(cls, directory: Path) -> AgentIdentity | None:
        try:
            key, cert, ca = (
                (directory / name).read_bytes() for name in (KEY_FILE, CERT_FILE, CA_FILE)
            )
        except FileNotFoundError:
            return None
        return cls(key, cert, ca)


def fetch_pinned_ca(address: str, pin: str, timeout: float = 10.0) -> bytes:
    """The CA certificate (PEM) of the server at `address`, if it matches `pin`."""
    host, port = split_host_port(address)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # trust comes from the pin, checked below
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        # Public in Python 3.13 as SSLSocket.get_unverified_chain(); the same call on the
        # underlying object before that. It is the only way to see the server's CA.
        chain = tls._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
        der = [entry.public_bytes(ssl._ssl.ENCODING_DER) for entry in chain]  # type: ignore[attr-defined]
    certificates = [x509.load_der_x509_certificate(data) for data in der]
    leaf = certificates[0]
    for candidate in certificates:
        if spki_pin(candidate) == pin:
            try:
                leaf.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                break
            return cert_pem(candidate)
    presented = ", ".join(spki_pin(c) for c in certificates[1:]) or "none"
    raise UnauthenticatedError(
        f"CA pin mismatch: the auth server at {address} presented CA {presented}, expected {pin}"
    )


def issue_local_agent_identity(ca: ClusterCA, server_id: str, now: datetime) -> AgentIdentity:
    """For an agent in the same process as the auth server: no token, no network."""
    key = new_key()
    identity = CertIdentity(IdentityKind.AGENT, server_id)
    cert = ca.issue(key.public_key(), identity, now, DEFAULT_AGENT_CERT_TTL)
    return AgentIdentity(key_pem(key), cert_pem(cert), ca.cert_pem)


async def join(address: str, token: str, server_id: str, pin: str) -> AgentIdentity:
    ca_pem = await asyncio.to_thread(fetch_pinned_ca, address, pin)
    key = new_key()
    csr = make_csr(key, server_id)
    request = pb.JoinAgentRequest(token=token, server_id=server_id, csr_pem=csr)
    async with grpc.aio.secure_channel(address, client_credentials(ca_pem)) as channel:
        try:
            response = await identity_grpc.IdentityServiceStub(channel).JoinAgent(request)
        except grpc.aio.AioRpcError as error:
            raise error_for(error.code(), error.details() or "") from None
    _log.info("joined the cluster", server_id=server_id, auth_server=address)
    return AgentIdentity(key_pem(key), response.certificate_pem, ca_pem)


async def renew(address: str, identity: AgentIdentity, server_id: str) -> AgentIdentity:
    key = new_key()
    request = pb.RenewAgentCertificateRequest(csr_pem=make_csr(key, server_id))
    async with grpc.aio.secure_channel(address, identity.credentials()) as channel:
        try:
            response = await identity_grpc.IdentityServiceStub(channel).RenewAgentCertificate(
                request
            )
        except grpc.aio.AioRpcError as error:
            raise error_for(error.code(), error.details() or "") from None
    return AgentIdentity(key_pem(key), response.certificate_pem, identity.ca_pem)


async def renew_forever(
    holder: IdentityHolder, addresses: tuple[str, ...], server_id: str, directory: Path | None
) -> None:
    """Renew the certificate at 2/3 of its lifetime; retry every 30 s on failure."""
    while True:
        wait = (holder.identity.renew_after() - datetime.now(UTC)).total_seconds()
        await asyncio.sleep(max(wait, 0.0))
        for address in addresses:
            try:
                renewed = await renew(address, holder.identity, server_id)
            except LockdError as error:
                # Refused (a locked agent, a revoked CA) or unreachable: keep the current
                # certificate and retry later; never let the renewal task die.
                _log.warning("certificate renewal failed", auth_server=address, error=str(error))
                continue
            if directory is not None:  # saved before use: a restart finds what is in use
                await asyncio.to_thread(renewed.save, directory)
            holder.identity = renewed
            not_after = renewed.certificate().not_valid_after_utc
            _log.info("renewed the agent certificate", not_after=str(not_after))
            break
        else:
            await asyncio.sleep(30)


class IdentityHolder:
    """The current identity; the watch client reads it at each (re)connection."""

    def __init__(self, identity: AgentIdentity) -> None:
        self.identity = identity

    def credentials(self) -> grpc.ChannelCredentials:
        return self.identity.credentials()

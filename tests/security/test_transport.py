"""Who gets through the auth port's TLS, and what a certificate that passes it must name.

grpc-python requires client certificates for a whole port: a caller without one, or with
one the cluster CA did not issue (or that has expired, or is not for client use), never
completes the handshake and sees UNAVAILABLE. A certificate that passes the handshake but
names no usable identity gets UNAUTHENTICATED on each call. The join port serves
JoinAgent only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lockd.client import AuthClient
from lockd.client.tls_credentials import client_credentials
from lockd.domain.errors import UnauthenticatedError, UnavailableError
from lockd.pki import (
    CertIdentity,
    ClusterCA,
    IdentityKind,
    cert_pem,
    key_pem,
    new_key,
)
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import identity_service_pb2 as identity_pb
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.v1.identity_service_pb2_grpc import IdentityServiceStub
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from tests.security.helpers import SecureCluster, now

CALL_TIMEOUT = 10.0


def issued(
    ca: ClusterCA,
    identity: CertIdentity,
    *,
    ttl: timedelta = timedelta(hours=1),
    at_offset: timedelta = timedelta(0),
    trust: bytes | None = None,
) -> grpc.ChannelCredentials:
    """Credentials with a certificate `ca` issues now (+ at_offset), trusting `trust`."""
    key = new_key()
    cert = ca.issue(key.public_key(), identity, now() + at_offset, ttl)
    return client_credentials(trust or ca.cert_pem, key_pem(key), cert_pem(cert))


async def status_code(channel: grpc.aio.Channel) -> tuple[grpc.StatusCode, str]:
    """The status of GetClusterStatus on this channel."""
    try:
        await ClusterServiceStub(channel).GetClusterStatus(
            cluster_pb.GetClusterStatusRequest(), timeout=CALL_TIMEOUT
        )
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def assert_refused_at_handshake(
    cluster: SecureCluster, credentials: grpc.ChannelCredentials
) -> None:
    """UNAVAILABLE with these credentials, while a valid user certificate gets through
    (to RBAC: a user without roles may not read the cluster status)."""
    code, _ = await status_code(cluster.channel(credentials))
    assert code is grpc.StatusCode.UNAVAILABLE
    control = issued(cluster.ca, CertIdentity(IdentityKind.USER, "carol", ()))
    assert await status_code(cluster.channel(control)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        'access denied to perform action "list" on "lock"',
    )


async def test_a_caller_without_a_client_certificate_is_refused_at_the_handshake(
    cluster: SecureCluster,
) -> None:
    """TLS that trusts the CA but shows no certificate never reaches a handler."""
    await assert_refused_at_handshake(cluster, client_credentials(cluster.ca.cert_pem))
    with pytest.raises(UnavailableError):
        await cluster.client(client_credentials(cluster.ca.cert_pem)).status()


async def test_a_plaintext_caller_is_refused(cluster: SecureCluster) -> None:
    """A client that does not speak TLS at all gets nowhere on the auth port."""
    async with grpc.aio.insecure_channel(cluster.address) as channel:
        code, _ = await status_code(channel)
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused_at_the_handshake(
    cluster: SecureCluster, tmp_path: Path
) -> None:
    """A well-formed user certificate of a foreign CA does not verify against ours."""
    foreign = await asyncio.to_thread(
        ClusterCA.load_or_create, tmp_path / "foreign", "evil.example", now()
    )
    credentials = issued(
        foreign, CertIdentity(IdentityKind.USER, "alice", ("locksmith",)), trust=cluster.ca.cert_pem
    )
    await assert_refused_at_handshake(cluster, credentials)


async def test_an_expired_certificate_is_refused_at_the_handshake(cluster: SecureCluster) -> None:
    """A certificate whose not_after has passed fails verification before any call."""
    credentials = issued(
        cluster.ca,
        CertIdentity(IdentityKind.USER, "alice", ("locksmith",)),
        ttl=timedelta(hours=1),
        at_offset=-timedelta(hours=2),
    )
    await assert_refused_at_handshake(cluster, credentials)


async def test_a_server_certificate_cannot_be_used_as_a_client_certificate(
    cluster: SecureCluster,
) -> None:
    """The CA issues server certificates for server auth only: refused at the handshake."""
    credentials = issued(cluster.ca, CertIdentity(IdentityKind.SERVER, "auth"))
    await assert_refused_at_handshake(cluster, credentials)


def forged_client_cert(ca: ClusterCA, subject: x509.Name) -> grpc.ChannelCredentials:
    """A client-auth certificate from the cluster CA with an arbitrary subject."""
    key = new_key()
    moment = now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - timedelta(minutes=1))
        .not_valid_after(moment + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return client_credentials(ca.cert_pem, key_pem(key), cert_pem(cert))


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        (
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "auth"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "server"),
                ]
            ),
            "a server certificate cannot call this API",
        ),
        (
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]),
            "certificate does not name a lockd identity",
        ),
        (
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "robot"),
                ]
            ),
            "certificate names an unknown identity kind",
        ),
    ],
    ids=["server-kind", "no-kind", "unknown-kind"],
)
async def test_a_valid_certificate_naming_no_usable_identity_is_unauthenticated(
    cluster: SecureCluster, subject: x509.Name, message: str
) -> None:
    """Past the handshake, a certificate must name a user or an agent, else UNAUTHENTICATED."""
    code, details = await status_code(cluster.channel(forged_client_cert(cluster.ca, subject)))
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, message)


async def test_a_certificate_that_expires_on_a_live_connection_is_refused_from_then_on(
    cluster: SecureCluster,
) -> None:
    """Connections outlive certificates: each call checks not_after again."""
    alice = await cluster.user("alice", ("locksmith",), ttl=timedelta(seconds=5))
    client = cluster.client(alice.credentials())
    await client.list_locks()  # the connection is up and the certificate still valid
    not_after = x509.load_pem_x509_certificate(alice.cert_pem).not_valid_after_utc
    cluster.clock.advance((not_after - cluster.clock.now()).total_seconds() + 0.5)
    with pytest.raises(UnauthenticatedError, match=r"^the client certificate has expired$"):
        await client.list_locks()


async def test_the_join_port_serves_nothing_but_join_agent(cluster: SecureCluster) -> None:
    """Other IdentityService calls get UNAUTHENTICATED there; other services do not exist."""
    channel = cluster.channel(client_credentials(cluster.ca.cert_pem), cluster.join_address)
    identity = IdentityServiceStub(channel)
    expected = (grpc.StatusCode.UNAUTHENTICATED, "only JoinAgent is served on the join port")
    calls: list[Awaitable[Any]] = [
        identity.CreateToken(
            identity_pb.CreateTokenRequest(type=identity_pb.TOKEN_TYPE_AGENT), timeout=CALL_TIMEOUT
        ),
        identity.SignUserIdentity(
            identity_pb.SignUserIdentityRequest(user="alice"), timeout=CALL_TIMEOUT
        ),
        identity.RenewAgentCertificate(
            identity_pb.RenewAgentCertificateRequest(), timeout=CALL_TIMEOUT
        ),
    ]
    for rpc in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await rpc
        assert (caught.value.code(), caught.value.details()) == expected
    others: tuple[Awaitable[Any], ...] = (
        LockServiceStub(channel).ListLocks(lock_pb.ListLocksRequest(), timeout=CALL_TIMEOUT),
        ClusterServiceStub(channel).GetClusterStatus(
            cluster_pb.GetClusterStatusRequest(), timeout=CALL_TIMEOUT
        ),
    )
    for other in others:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await other
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_the_join_port_does_not_ask_for_a_client_certificate(
    cluster: SecureCluster,
) -> None:
    """Server-auth TLS only: a joining agent has no certificate yet."""
    channel = cluster.channel(client_credentials(cluster.ca.cert_pem), cluster.join_address)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await IdentityServiceStub(channel).JoinAgent(
            identity_pb.JoinAgentRequest(token="0" * 32, server_id="node-1"),
            timeout=CALL_TIMEOUT,
        )
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "join token is invalid, expired or already used",
    )


async def test_the_admin_socket_needs_no_certificate(cluster: SecureCluster) -> None:
    """The local admin socket (mode 0600) is the bootstrap path: plain gRPC, full rights."""
    assert (cluster.admin_socket.stat().st_mode & 0o777) == 0o600
    async with AuthClient.connect(f"unix:{cluster.admin_socket}") as admin:
        status = await admin.status()
    assert status.ca_pin == cluster.ca.pin

"""Joining agents: a one-time token and the CA pin buy a certificate bound to a server_id."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from lockd.client.join import (
    AgentIdentity,
    IdentityHolder,
    fetch_pinned_ca,
    join,
    renew,
    renew_forever,
)
from lockd.domain.errors import AccessDeniedError, UnauthenticatedError, ValidationError
from lockd.domain.lock import Lock, LockTarget
from lockd.pki import CertIdentity, IdentityKind, cert_pem, key_pem, new_key, spki_pin
from lockd.v1 import identity_service_pb2 as identity_pb
from lockd.v1.identity_service_pb2_grpc import IdentityServiceStub
from tests.security.helpers import RawWatch, SecureCluster, now
from tests.support import eventually

TOKEN_REFUSED = "^join token is invalid, expired or already used$"
WRONG_PIN = "sha256:" + "0" * 64


def subject_of(cert: x509.Certificate) -> tuple[str, str]:
    """(CN, OU) of a certificate."""
    name = cert.subject
    return (
        str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value),
        str(name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value),
    )


async def test_a_join_token_buys_one_agent_certificate(cluster: SecureCluster) -> None:
    """The pinned CA is fetched from the join port; the certificate names the server_id."""
    admin = cluster.admin()
    token, expires = await admin.create_agent_token(timedelta(hours=1))
    pin = (await admin.status()).ca_pin
    ca_pem = await asyncio.to_thread(fetch_pinned_ca, cluster.join_address, pin)
    assert ca_pem == cluster.ca.cert_pem
    assert expires is not None

    identity = await join(cluster.join_address, token, "node-1", pin)
    cert = identity.certificate()
    assert subject_of(cert) == ("node-1", "agent")
    cert.verify_directly_issued_by(cluster.ca.cert)
    assert identity.ca_pem == cluster.ca.cert_pem
    # The new identity is good on the mTLS port: the agent may watch as itself.
    watch = RawWatch(cluster.channel(identity.credentials()), "node-1")
    await watch.hello()
    await watch.read_until("snapshot_end")
    watch.cancel()


async def test_a_used_join_token_is_refused(cluster: SecureCluster) -> None:
    """A second join with the same token: UNAUTHENTICATED, whatever the server_id."""
    admin = cluster.admin()
    token, _ = await admin.create_agent_token(timedelta(hours=1))
    pin = (await admin.status()).ca_pin
    await join(cluster.join_address, token, "node-1", pin)
    with pytest.raises(UnauthenticatedError, match=TOKEN_REFUSED):
        await join(cluster.join_address, token, "node-2", pin)
    with pytest.raises(UnauthenticatedError, match=TOKEN_REFUSED):
        await join(cluster.join_address, token, "node-1", pin)


async def test_an_expired_join_token_is_refused(cluster: SecureCluster) -> None:
    """A token past its TTL is refused with the same message as an unknown one."""
    admin = cluster.admin()
    token, expires = await admin.create_agent_token(timedelta(seconds=1))
    pin = (await admin.status()).ca_pin
    assert expires is not None
    cluster.clock.advance(1.5)
    with pytest.raises(UnauthenticatedError, match=TOKEN_REFUSED):
        await join(cluster.join_address, token, "node-1", pin)
    with pytest.raises(UnauthenticatedError, match=TOKEN_REFUSED):
        await join(cluster.join_address, "not-a-token", "node-1", pin)


async def test_an_agent_with_the_wrong_ca_pin_refuses_to_join_and_keeps_its_token(
    cluster: SecureCluster,
) -> None:
    """Pin mismatch: UnauthenticatedError naming both pins; the token was never sent."""
    admin = cluster.admin()
    token, _ = await admin.create_agent_token(timedelta(hours=1))
    pin = (await admin.status()).ca_pin
    with pytest.raises(UnauthenticatedError) as caught:
        await asyncio.to_thread(fetch_pinned_ca, cluster.join_address, WRONG_PIN)
    assert str(caught.value) == (
        f"CA pin mismatch: the auth server at {cluster.join_address} presented CA {pin}, "
        f"expected {WRONG_PIN}"
    )
    with pytest.raises(UnauthenticatedError, match=r"^CA pin mismatch"):
        await join(cluster.join_address, token, "node-1", WRONG_PIN)
    identity = await join(cluster.join_address, token, "node-1", pin)  # still unused
    assert subject_of(identity.certificate()) == ("node-1", "agent")


async def test_pinning_the_server_certificate_instead_of_the_ca_is_refused(
    cluster: SecureCluster,
) -> None:
    """Only a CA in the chain that signed the server's certificate can match the pin."""
    leaf_pem = await asyncio.to_thread(
        ssl.get_server_certificate, ("127.0.0.1", cluster.running.join_port)
    )
    leaf_pin = spki_pin(x509.load_pem_x509_certificate(leaf_pem.encode()))
    with pytest.raises(UnauthenticatedError, match=r"^CA pin mismatch"):
        await asyncio.to_thread(fetch_pinned_ca, cluster.join_address, leaf_pin)


async def test_an_agent_renews_its_certificate_over_mtls(cluster: SecureCluster) -> None:
    """RenewAgentCertificate: a new key and certificate for the same server_id."""
    identity = await cluster.agent("node-1")
    renewed = await renew(cluster.address, identity, "node-1")
    assert subject_of(renewed.certificate()) == ("node-1", "agent")
    assert renewed.key_pem != identity.key_pem
    assert renewed.certificate().serial_number != identity.certificate().serial_number
    renewed.certificate().verify_directly_issued_by(cluster.ca.cert)
    # The CSR's subject is ignored: the certificate names the caller's server_id.
    other = await renew(cluster.address, renewed, "node-999")
    assert subject_of(other.certificate()) == ("node-1", "agent")
    assert renewed.renew_after() < renewed.certificate().not_valid_after_utc


async def test_only_agents_renew_agent_certificates(cluster: SecureCluster) -> None:
    """A user certificate cannot be turned into an agent certificate by renewal."""
    alice = await cluster.user("alice", ("locksmith",))
    stub = IdentityServiceStub(cluster.channel(alice.credentials()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RenewAgentCertificate(identity_pb.RenewAgentCertificateRequest(), timeout=10)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == 'access denied to perform action "renew" on "certificate"'


async def test_creating_join_tokens_needs_token_rights(cluster: SecureCluster) -> None:
    """`create` on `token`: a locksmith (lock rights only) may not mint join tokens."""
    alice = cluster.client((await cluster.user("alice", ("locksmith",))).credentials())
    with pytest.raises(
        AccessDeniedError, match=r'^access denied to perform action "create" on "token"$'
    ):
        await alice.create_agent_token(timedelta(hours=1))


async def test_join_tokens_are_bounded_and_server_ids_validated(cluster: SecureCluster) -> None:
    """A token TTL over 7 days is refused; a join with an invalid server_id is refused."""
    admin = cluster.admin()
    with pytest.raises(ValidationError, match="token TTL must not exceed"):
        await admin.create_agent_token(timedelta(days=8))
    token, _ = await admin.create_agent_token(timedelta(hours=1))
    pin = (await admin.status()).ca_pin
    with pytest.raises(ValidationError):
        await join(cluster.join_address, token, "", pin)


def short_lived_agent(cluster: SecureCluster, server_id: str) -> AgentIdentity:
    """An agent identity already past 2/3 of its lifetime (valid from 60 s ago for 90 s)."""
    key = new_key()
    cert = cluster.ca.issue(
        key.public_key(),
        CertIdentity(IdentityKind.AGENT, server_id),
        now(),
        timedelta(seconds=30),
    )
    return AgentIdentity(key_pem(key), cert_pem(cert), cluster.ca.cert_pem)


async def test_the_renewal_loop_renews_at_two_thirds_of_the_lifetime_and_saves(
    cluster: SecureCluster, tmp_path: Path
) -> None:
    """renew_forever replaces the holder's identity and writes it to the data dir."""
    old = short_lived_agent(cluster, "node-1")
    assert old.renew_after() <= now()
    holder = IdentityHolder(old)
    task = asyncio.create_task(renew_forever(holder, (cluster.address,), "node-1", tmp_path))
    try:
        await eventually(_changed(holder, old), what="the certificate to be renewed")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    renewed = holder.identity
    assert subject_of(renewed.certificate()) == ("node-1", "agent")
    assert renewed.renew_after() > now() + timedelta(hours=15)
    assert await asyncio.to_thread(AgentIdentity.load, tmp_path) == renewed
    assert stat.S_IMODE((tmp_path / "agent.key").stat().st_mode) == 0o600


async def test_a_locked_agent_keeps_its_certificate_and_its_renewal_loop(
    cluster: SecureCluster, tmp_path: Path
) -> None:
    """A refused renewal is logged and retried later; the loop does not die."""
    await cluster.admin().create_lock(Lock("n2", LockTarget(server_id="node-2")))
    old = short_lived_agent(cluster, "node-2")
    holder = IdentityHolder(old)
    task = asyncio.create_task(renew_forever(holder, (cluster.address,), "node-2", tmp_path))
    try:
        await eventually(_denied(cluster, "node-2"), what="the refused renewal")
        await asyncio.sleep(0.2)
        assert not task.done()
        assert holder.identity is old
        assert AgentIdentity.load(tmp_path) is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _changed(holder: IdentityHolder, old: AgentIdentity) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return holder.identity is not old

    return probe


def _denied(cluster: SecureCluster, server_id: str) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return any(
            event.fields["identity"] == {"server_id": server_id}
            for event in cluster.audit.of("access.denied")
        )

    return probe

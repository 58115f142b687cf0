"""The cluster CA: created once in the data dir, kept across restarts, pinned by its SPKI."""

from __future__ import annotations

import hashlib
import ssl
import stat
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lockd.domain.errors import AccessDeniedError, ValidationError
from lockd.pki import make_csr, new_key
from tests.security.helpers import SecureCluster


def independent_pin(cert_pem: bytes) -> str:
    """sha256 over the DER SubjectPublicKeyInfo, computed without lockd's code."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


async def test_ca_is_created_on_first_start_with_a_private_key_only_its_owner_reads(
    sqlite_cluster: SecureCluster,
) -> None:
    """First start writes ca.key (mode 0600) and a self-signed CA certificate ca.crt."""
    assert not sqlite_cluster.ca_dir.exists()
    await sqlite_cluster.start()
    key_file, cert_file = sqlite_cluster.ca_dir / "ca.key", sqlite_cluster.ca_dir / "ca.crt"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.issuer == cert.subject
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True


async def test_restart_reuses_the_ca_and_status_reports_its_spki_pin(
    sqlite_cluster: SecureCluster,
) -> None:
    """GetClusterStatus returns sha256:<hex of the CA SPKI>; a restart keeps the same CA."""
    await sqlite_cluster.start()
    cert_file = sqlite_cluster.ca_dir / "ca.crt"
    first_pem = cert_file.read_bytes()
    first_pin = (await sqlite_cluster.admin().status()).ca_pin
    assert first_pin == independent_pin(first_pem)
    await sqlite_cluster.stop()

    await sqlite_cluster.start()
    assert cert_file.read_bytes() == first_pem
    assert (await sqlite_cluster.admin().status()).ca_pin == first_pin


async def test_a_user_certificate_names_the_user_its_kind_and_its_current_roles(
    cluster: SecureCluster,
) -> None:
    """SignUserIdentity puts CN=user, OU=user, O=each role held now, client-auth usage."""
    alice = await cluster.user("alice", ("locksmith", "dev"))
    cert = x509.load_pem_x509_certificate(alice.cert_pem)
    subject = cert.subject
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["alice"]
    assert [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)] == [
        "user"
    ]
    roles = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert roles == ["locksmith", "dev"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(cluster.ca.cert)
    assert alice.ca_pem == cluster.ca.cert_pem


async def test_user_certificates_are_bounded_to_thirty_days(cluster: SecureCluster) -> None:
    """A TTL over 30 days is refused with a clear error; signing needs user rights."""
    admin = cluster.admin()
    with pytest.raises(ValidationError, match="must not exceed 720h"):
        await admin.sign_user_identity("alice", timedelta(days=31), make_csr(new_key(), "x"))
    auditor = await cluster.user("audrey", ("auditor",))
    with pytest.raises(AccessDeniedError, match=r'^access denied to perform action "create" on'):
        await cluster.client(auditor.credentials()).sign_user_identity(
            "audrey", timedelta(hours=1), make_csr(new_key(), "audrey")
        )


async def test_the_server_certificate_is_issued_by_the_cluster_ca_for_loopback_names(
    cluster: SecureCluster,
) -> None:
    """The auth port presents a server-auth certificate for 127.0.0.1 and localhost."""
    pem = ssl.get_server_certificate(("127.0.0.1", cluster.running.port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    cert.verify_directly_issued_by(cluster.ca.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert any(str(ip) == "127.0.0.1" for ip in names.get_values_for_type(x509.IPAddress))
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]

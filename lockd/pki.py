"""The cluster certificate authority: identities for users, agents and the auth server.

Created on first start in the data dir (`ca.key` mode 0600, `ca.crt`). Certificates name
who holds them in their subject: CN = user name or agent server_id, OU = the kind
(`user`, `agent`, `server`), O = one entry per role. A user certificate may also name
the MFA device, the trusted device and the access requests it was issued for, in
subject attributes of lockd's own OIDs (as Teleport puts them in its certificates'
subject), so locks on those reach the sessions it opens (`lockd proxy`). A certificate
request asks for them with the same attributes in its subject; the CA copies only those.
The CA pin that agents and operators check is `sha256:<hex>` of the CA's
SubjectPublicKeyInfo (DER), as Teleport's.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lockd.domain.errors import UnauthenticatedError, ValidationError
from lockd.domain.identity import Identity
from lockd.durable_files import write_durably

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.crt"
CA_LIFETIME = timedelta(days=3650)
CLOCK_SKEW = timedelta(minutes=1)
# lockd's OID arc: 2.25.<a UUID as an integer> (ITU-T X.667), unique without registration.
LOCKD_OID_ARC = "2.25.144483054995706517374326308584715465555"
MFA_DEVICE_OID = x509.ObjectIdentifier(LOCKD_OID_ARC + ".1")
DEVICE_OID = x509.ObjectIdentifier(LOCKD_OID_ARC + ".2")
ACCESS_REQUEST_OID = x509.ObjectIdentifier(LOCKD_OID_ARC + ".3")  # one attribute per request


class IdentityKind(StrEnum):
    USER = "user"
    AGENT = "agent"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class DeviceAttributes:
    """What a user certificate was issued for besides user and roles (lock targets)."""

    mfa_device: str = ""
    device: str = ""
    access_requests: tuple[str, ...] = ()

    def identity(self, user: str, roles: tuple[str, ...], login: str = "") -> Identity:
        """The session identity of `user` with these attributes."""
        return Identity(
            user=user,
            roles=roles,
            login=login,
            mfa_device=self.mfa_device,
            device=self.device,
            access_requests=self.access_requests,
        )

    def subject_attributes(self) -> list[x509.NameAttribute[str]]:
        named = [(MFA_DEVICE_OID, self.mfa_device), (DEVICE_OID, self.device)]
        named += [(ACCESS_REQUEST_OID, request) for request in self.access_requests]
        return [x509.NameAttribute(oid, value) for oid, value in named if value]

    @classmethod
    def of_subject(cls, subject: x509.Name) -> DeviceAttributes:
        def values(oid: x509.ObjectIdentifier) -> tuple[str, ...]:
            return tuple(str(item.value) for item in subject.get_attributes_for_oid(oid))

        mfa_devices, devices = values(MFA_DEVICE_OID), values(DEVICE_OID)
        if len(mfa_devices) > 1 or len(devices) > 1:
            raise UnauthenticatedError("certificate names more than one MFA device or device")
        return cls(
            mfa_devices[0] if mfa_devices else "",
            devices[0] if devices else "",
            values(ACCESS_REQUEST_OID),
        )


@dataclass(frozen=True, slots=True)
class CertIdentity:
    kind: IdentityKind
    name: str
    roles: tuple[str, ...] = ()
    attributes: DeviceAttributes = DeviceAttributes()


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def spki_pin(cert: x509.Certificate) -> str:
    """`sha256:<hex>` over the certificate's SubjectPublicKeyInfo (DER)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def make_csr(
    key: ec.EllipticCurvePrivateKey, name: str, attributes: DeviceAttributes = DeviceAttributes()
) -> bytes:
    """A CSR for the public key, asking for `attributes`; the CA decides the subject."""
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, name or "lockd")]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject + attributes.subject_attributes()))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(
    csr_pem: bytes,
) -> tuple[x509.CertificateSigningRequest, ec.EllipticCurvePublicKey]:
    """A signed certificate request for an EC key, and that key (ValidationError otherwise)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as error:
        raise ValidationError(f"invalid certificate signing request: {error}") from None
    public_key = csr.public_key()
    if not csr.is_signature_valid or not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValidationError("the certificate signing request must be a signed EC key")
    return csr, public_key


def requested_attributes(csr_pem: bytes) -> DeviceAttributes:
    """The MFA device, device and access requests a certificate request asks for."""
    try:
        return DeviceAttributes.of_subject(load_csr(csr_pem)[0].subject)
    except UnauthenticatedError as error:
        raise ValidationError(f"certificate signing request: {error}") from None


def identity_of(cert: x509.Certificate) -> CertIdentity:
    """Who a certificate issued by the cluster CA names."""
    subject = cert.subject
    names = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    kinds = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(names) != 1 or len(kinds) != 1:
        raise UnauthenticatedError("certificate does not name a lockd identity")
    try:
        kind = IdentityKind(str(kinds[0].value))
    except ValueError:
        raise UnauthenticatedError("certificate names an unknown identity kind") from None
    roles = tuple(
        str(attribute.value)
        for attribute in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )
    return CertIdentity(kind, str(names[0].value), roles, DeviceAttributes.of_subject(subject))


class ClusterCA:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert
        self.cert_pem = cert_pem(cert)
        self.pin = spki_pin(cert)

    @classmethod
    def load_or_create(cls, data_dir: Path, cluster_name: str, now: datetime) -> ClusterCA:
        key_path, cert_path = data_dir / CA_KEY_FILE, data_dir / CA_CERT_FILE
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValidationError(f"{key_path} is not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        key = new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"lockd CA {cluster_name}"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_name),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_durably(key_path, key_pem(key))
        cert_path.write_bytes(cert_pem(cert))
        return cls(key, cert)

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        identity: CertIdentity,
        now: datetime,
        ttl: timedelta,
        hosts: Sequence[str] = (),
    ) -> x509.Certificate:
        attributes = [
            x509.NameAttribute(NameOID.COMMON_NAME, identity.name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.kind.value),
            *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, role) for role in identity.roles),
            *identity.attributes.subject_attributes(),
        ]
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if identity.kind is IdentityKind.SERVER
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + ttl, self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(list(_san(hosts))), critical=False
            )
        return builder.sign(self.key, hashes.SHA256())

    def sign_csr(
        self, csr_pem: bytes, identity: CertIdentity, now: datetime, ttl: timedelta
    ) -> x509.Certificate:
        return self.issue(load_csr(csr_pem)[1], identity, now, ttl)


def _san(hosts: Iterable[str]) -> Iterable[x509.GeneralName]:
    for host in dict.fromkeys(hosts):
        try:
            yield x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            yield x509.DNSName(host)

"""The cluster's SSH user CA: OpenSSH user certificates that name a lockd identity.

sshd trusts the CA's public key (`TrustedUserCAKeys`); `lockd ssh-session` reads the
certificate a connection authenticated with (sshd's `ExposeAuthInfo`) and takes the
session's lockd identity from it:

- key ID: the lockd user;
- principals: the OS logins the certificate may log in as (sshd checks them);
- extensions (names in the `@lockd` namespace, which sshd ignores): `roles@lockd` (the
  roles, comma-separated), `mfa-device@lockd` and `device@lockd` when present, next to
  OpenSSH's usual `permit-*` extensions.

Extension values are UTF-8 text (the certificate format frames them as SSH strings).
The CA key is an Ed25519 key of its own, derived from the cluster CA's key: one key per
protocol, nothing more to store or back up.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    SSHCertificate,
    SSHCertificateBuilder,
    SSHCertificateType,
)

from lockd.domain.errors import UnauthenticatedError, ValidationError

DERIVATION_LABEL = b"lockd ssh user ca v1"
EXT_ROLES = "roles@lockd"
EXT_MFA_DEVICE = "mfa-device@lockd"
EXT_DEVICE = "device@lockd"
# What a plain `ssh-keygen -s` certificate permits; sshd's own policy still applies.
PERMIT_EXTENSIONS = (
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
)
CLOCK_SKEW = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class SSHUserIdentity:
    """Who an OpenSSH user certificate names (the lockd side of it)."""

    user: str
    roles: tuple[str, ...] = ()
    mfa_device: str = ""
    device: str = ""


@dataclass(frozen=True, slots=True)
class SignedSSHCertificate:
    certificate: bytes  # one OpenSSH line: "<type>-cert-v01@openssh.com <base64>"
    ca_public_key: bytes  # one OpenSSH line, for TrustedUserCAKeys
    roles: tuple[str, ...]
    principals: tuple[str, ...]
    not_after: datetime | None  # None: the server did not say


def public_key_line(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def load_user_public_key(line: bytes) -> serialization.SSHPublicKeyTypes:
    """A user's public key in OpenSSH format (`ssh-ed25519 AAAA... comment`)."""
    try:
        key = serialization.load_ssh_public_key(line.strip())
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ValidationError(f"invalid OpenSSH public key: {error}") from None
    return key


class SSHUserCA:
    """The key that signs OpenSSH user certificates for the cluster's users."""

    def __init__(self, key: ed25519.Ed25519PrivateKey, cluster_name: str) -> None:
        self.key = key
        comment = f" lockd-user-ca@{cluster_name}".encode()
        self.public_line = public_key_line(key.public_key()) + comment

    @classmethod
    def derived_from(cls, ca_key: ec.EllipticCurvePrivateKey, cluster_name: str) -> SSHUserCA:
        """The SSH user CA of the cluster whose X.509 CA key is `ca_key`.

        Derived (HKDF-SHA256 with its own label), so it is a separate key that needs no
        file, backup or wiring of its own, and it changes when the cluster CA does.
        """
        secret = ca_key.private_numbers().private_value.to_bytes(32, "big")
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DERIVATION_LABEL)
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed.derive(secret))
        return cls(key, cluster_name)

    def sign(
        self,
        public_key_line: bytes,
        identity: SSHUserIdentity,
        principals: Sequence[str],
        now: datetime,
        ttl: timedelta,
    ) -> SignedSSHCertificate:
        if not principals:
            raise ValidationError("an SSH certificate needs at least one login (principal)")
        public_key = load_user_public_key(public_key_line)
        if not isinstance(public_key, _CERTIFIABLE_KEYS):
            raise ValidationError("only Ed25519, ECDSA and RSA keys can be certified")
        not_before = now - CLOCK_SKEW
        not_after = now + ttl
        builder = (
            SSHCertificateBuilder()
            .public_key(public_key)
            .serial(secrets.randbits(64))
            .type(SSHCertificateType.USER)
            .key_id(identity.user.encode())
            .valid_principals([principal.encode() for principal in principals])
            .valid_after(int(not_before.timestamp()))
            .valid_before(int(not_after.timestamp()))
        )
        for name, value in sorted(_extensions(identity)):
            builder = builder.add_extension(name.encode(), value)
        certificate = builder.sign(self.key)
        return SignedSSHCertificate(
            certificate.public_bytes(),
            self.public_line,
            identity.roles,
            tuple(principals),
            not_after,
        )


_CERTIFIABLE_KEYS = (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)


def _extensions(identity: SSHUserIdentity) -> Iterable[tuple[str, bytes]]:
    for name in PERMIT_EXTENSIONS:
        yield name, b""
    if identity.roles:
        yield EXT_ROLES, ",".join(identity.roles).encode()
    if identity.mfa_device:
        yield EXT_MFA_DEVICE, identity.mfa_device.encode()
    if identity.device:
        yield EXT_DEVICE, identity.device.encode()


def load_certificate(line: bytes) -> SSHCertificate:
    """An OpenSSH certificate from its public form (`<type>-cert-v01@openssh.com AAAA...`)."""
    try:
        return serialization.load_ssh_public_identity(line.strip())  # type: ignore[return-value]
    except (ValueError, UnsupportedAlgorithm) as error:
        raise UnauthenticatedError(f"invalid OpenSSH certificate: {error}") from None


def load_trusted_ca_keys(text: str) -> tuple[bytes, ...]:
    """The CA keys of a `TrustedUserCAKeys` file, as raw key blobs (type and base64)."""
    keys = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            keys.append(b" ".join(field.encode() for field in fields[:2]))
    return tuple(keys)


def verified_identity(
    certificate: SSHCertificate, trusted_ca_keys: Sequence[bytes], login: str, now: datetime
) -> SSHUserIdentity:
    """The identity a certificate names, once it is proven to be one sshd had to accept.

    sshd has already checked the certificate; the hook checks again, because the file
    sshd exposes it in belongs to the user: only a user certificate signed by a trusted
    CA, valid now and naming `login` as a principal counts.
    """
    if certificate.type is not SSHCertificateType.USER:
        raise UnauthenticatedError("the SSH certificate is not a user certificate")
    signer = certificate.signature_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    if signer not in trusted_ca_keys:
        raise UnauthenticatedError("the SSH certificate is not signed by a trusted CA")
    try:
        certificate.verify_cert_signature()
    except InvalidSignature:
        raise UnauthenticatedError("the SSH certificate's signature is invalid") from None
    timestamp = int(now.timestamp())
    if not certificate.valid_after <= timestamp < certificate.valid_before:
        raise UnauthenticatedError("the SSH certificate is not valid now")
    if login.encode() not in certificate.valid_principals:
        raise UnauthenticatedError(f'the SSH certificate does not name the login "{login}"')
    return identity_of(certificate)


def identity_of(certificate: SSHCertificate) -> SSHUserIdentity:
    """The lockd identity a certificate names (key ID and `@lockd` extensions)."""
    extensions = certificate.extensions
    roles = _extension(extensions, EXT_ROLES)
    return SSHUserIdentity(
        user=_text(certificate.key_id, "key ID"),
        roles=tuple(role for role in roles.split(",") if role),
        mfa_device=_extension(extensions, EXT_MFA_DEVICE),
        device=_extension(extensions, EXT_DEVICE),
    )


def _extension(extensions: dict[bytes, bytes], name: str) -> str:
    return _text(extensions.get(name.encode(), b""), name)


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise UnauthenticatedError(f"the SSH certificate's {what} is not UTF-8") from None

"""Identity files: the private key, certificate and CA certificate `lockctl auth sign`
writes, read back to build mTLS credentials."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from lockd.client.tls_credentials import client_credentials
from lockd.domain.errors import ValidationError

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
IDENTITY_FILE_LAYOUT = (
    "an identity file holds a PRIVATE KEY, then the user's CERTIFICATE, then the cluster "
    "CA's CERTIFICATE, as `lockctl auth sign` writes it"
)


@dataclass(frozen=True, slots=True)
class IdentityFile:
    """A client identity for mTLS in one file, like Teleport's identity file.

    PEM blocks in this order: the private key, the certificate the cluster CA issued for
    it, and the CA certificate(s) to trust the auth server with. `parse` checks the
    structure (every block present and readable, the certificate belongs to the key and
    was issued by a CA in the file), not whether the certificate is still valid.
    """

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    def render(self) -> bytes:
        return b"".join(_ending_newline(pem) for pem in (self.key_pem, self.cert_pem, self.ca_pem))

    def credentials(self) -> grpc.ChannelCredentials:
        return client_credentials(self.ca_pem, self.key_pem, self.cert_pem)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def ca_certificates(self) -> list[bytes]:
        """Each CA certificate of the file, as PEM."""
        return [m.group(0) + b"\n" for m in _PEM_BLOCK.finditer(self.ca_pem)]

    @classmethod
    def load(cls, path: str | Path) -> IdentityFile:
        """Read and parse `path`; ValidationError naming the file and the problem."""
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise ValidationError(f"cannot read {path}: {error.strerror or error}") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "identity file") -> IdentityFile:
        blocks = [(m.group(1).decode(), m.group(0) + b"\n") for m in _PEM_BLOCK.finditer(data)]
        if not blocks:
            raise ValidationError(
                f"{source}: not an identity file, no PEM blocks ({IDENTITY_FILE_LAYOUT})"
            )
        keys = [pem for label, pem in blocks if label.endswith("PRIVATE KEY")]
        certs = [pem for label, pem in blocks if label == "CERTIFICATE"]
        if len(keys) != 1:
            what = "no private key" if not keys else f"{len(keys)} private keys"
            raise ValidationError(f"{source}: {what} ({IDENTITY_FILE_LAYOUT})")
        if not certs:
            raise ValidationError(f"{source}: no certificate ({IDENTITY_FILE_LAYOUT})")
        if len(certs) < 2:
            raise ValidationError(f"{source}: no CA certificate ({IDENTITY_FILE_LAYOUT})")
        key = _load_key(keys[0], source)
        cert, *cas = (_load_certificate(pem, source) for pem in certs)
        if _spki(cert.public_key()) != _spki(key.public_key()):
            raise ValidationError(f"{source}: the certificate is not for the private key")
        if not any(_issued_by(cert, ca) for ca in cas):
            raise ValidationError(
                f"{source}: the certificate was not issued by the CA certificate in the file"
            )
        return cls(keys[0], certs[0], b"".join(certs[1:]))


def _ending_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _load_key(pem: bytes, source: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ValidationError(f"{source}: the private key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ValidationError(f"{source}: invalid private key ({error})") from None


def _load_certificate(pem: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise ValidationError(f"{source}: invalid certificate ({error})") from None


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True

"""OpenSSH user certificates from the cluster's SSH user CA, and the identity the SSH hook
takes from what sshd exposes (SSH_USER_AUTH, SSH_CONNECTION, the login mapping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lockd.domain.errors import UnauthenticatedError, ValidationError
from lockd.domain.identity import Identity
from lockd.pki import new_key
from lockd.pki_openssh import (
    SignedSSHCertificate,
    SSHUserCA,
    SSHUserIdentity,
    identity_of,
    load_certificate,
)
from lockd.ssh.session_identity import remote_address, session_of

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ALICE = SSHUserIdentity("alice", ("dev", "ops"), mfa_device="mfa-1", device="laptop-2")


def user_public_key() -> bytes:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )


def sign(ca: SSHUserCA, identity: SSHUserIdentity = ALICE, login: str = "root") -> bytes:
    signed = ca.sign(user_public_key(), identity, (login,), NOW, timedelta(hours=1))
    return signed.certificate


def environment(tmp_path: Path, certificate: bytes | None) -> dict[str, str]:
    auth = tmp_path / "auth-info"
    lines = ["publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1vcmUgdGhhbiBhIGtleQ"]
    if certificate is not None:
        lines.append("publickey " + certificate.decode())
    auth.write_text("\n".join(lines) + "\n")
    return {"SSH_USER_AUTH": str(auth), "SSH_CONNECTION": "203.0.113.7 51234 10.0.0.1 22"}


def trusted(tmp_path: Path, *cas: SSHUserCA) -> Path:
    path = tmp_path / "user_ca.pub"
    path.write_bytes(
        b"# the cluster's SSH user CA\n" + b"".join(ca.public_line + b"\n" for ca in cas)
    )
    return path


def test_a_certificate_names_the_user_roles_and_devices_and_only_the_given_logins() -> None:
    """Key ID = user, roles and devices in @lockd extensions, the logins as principals."""
    ca = SSHUserCA.derived_from(new_key(), "c1")
    signed: SignedSSHCertificate = ca.sign(
        user_public_key(), ALICE, ("root", "deploy"), NOW, timedelta(hours=2)
    )
    certificate = load_certificate(signed.certificate)
    assert identity_of(certificate) == ALICE
    assert certificate.valid_principals == [b"root", b"deploy"]
    assert certificate.valid_before == int((NOW + timedelta(hours=2)).timestamp())
    assert signed.ca_public_key.endswith(b" lockd-user-ca@c1")
    assert signed.roles == ("dev", "ops")


def test_the_ssh_ca_is_derived_from_the_cluster_ca_key_and_differs_from_it() -> None:
    """The same cluster CA key always gives the same SSH CA; another key another one."""
    key = new_key()
    first = SSHUserCA.derived_from(key, "c1").public_line
    assert SSHUserCA.derived_from(key, "c1").public_line == first
    assert SSHUserCA.derived_from(new_key(), "c1").public_line != first


def test_signing_refuses_a_key_that_is_not_an_openssh_public_key_and_no_login() -> None:
    """Bad input is a validation error, not a traceback."""
    ca = SSHUserCA.derived_from(new_key(), "c1")
    with pytest.raises(ValidationError, match="invalid OpenSSH public key"):
        ca.sign(b"not a key", ALICE, ("root",), NOW, timedelta(hours=1))
    with pytest.raises(ValidationError, match="at least one login"):
        ca.sign(user_public_key(), ALICE, (), NOW, timedelta(hours=1))


def test_the_session_is_the_certificates_user_on_the_login(tmp_path: Path) -> None:
    """A certificate signed by a trusted CA names the session; the login is the OS user's."""
    ca = SSHUserCA.derived_from(new_key(), "c1")
    env = environment(tmp_path, sign(ca))
    session = session_of("root", env, trusted(tmp_path, ca), {"root": "bob"}, NOW)
    assert session.identity == Identity(
        user="alice", roles=("dev", "ops"), login="root", mfa_device="mfa-1", device="laptop-2"
    )
    assert session.remote_address == "203.0.113.7:51234"
    assert session.source == "certificate"


def test_a_plain_key_is_the_mapped_user_or_the_login_alone(tmp_path: Path) -> None:
    """Without a certificate: agent_service.ssh.logins, else only the login."""
    env = environment(tmp_path, None)
    ca_file = trusted(tmp_path)
    mapped = session_of("root", env, ca_file, {"root": "bob"}, NOW)
    assert (mapped.identity, mapped.source) == (Identity(user="bob", login="root"), "mapping")
    alone = session_of("deploy", env, ca_file, {"root": "bob"}, NOW)
    assert (alone.identity, alone.source) == (Identity(login="deploy"), "login")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("untrusted CA", "not signed by a trusted CA"),
        ("other login", 'does not name the login "root"'),
        ("expired", "not valid now"),
    ],
)
def test_a_certificate_that_fails_a_check_refuses_the_session(
    tmp_path: Path, case: str, message: str
) -> None:
    """No fallback to the login: a user must not dodge a user lock with a bad certificate."""
    ca, other = SSHUserCA.derived_from(new_key(), "c1"), SSHUserCA.derived_from(new_key(), "c2")
    certificate = {
        "untrusted CA": lambda: sign(other),
        "other login": lambda: sign(ca, login="deploy"),
        "expired": lambda: sign(ca),
    }[case]()
    now = NOW + timedelta(hours=2) if case == "expired" else NOW
    with pytest.raises(UnauthenticatedError, match=message):
        session_of("root", environment(tmp_path, certificate), trusted(tmp_path, ca), {}, now)


def test_a_missing_ca_file_refuses_a_certificate_session(tmp_path: Path) -> None:
    """The CA file named by agent_service.ssh.user_ca_keys must be readable."""
    ca = SSHUserCA.derived_from(new_key(), "c1")
    with pytest.raises(UnauthenticatedError, match="cannot read the SSH user CA keys"):
        session_of("root", environment(tmp_path, sign(ca)), tmp_path / "missing", {}, NOW)


def test_the_pam_environment_carries_the_same_listing(tmp_path: Path) -> None:
    """pam_exec sees the credentials in SSH_AUTH_INFO_0 instead of a file."""
    ca = SSHUserCA.derived_from(new_key(), "c1")
    env = {"SSH_AUTH_INFO_0": "publickey " + sign(ca).decode() + "\n"}
    assert session_of("root", env, trusted(tmp_path, ca), {}, NOW).identity.user == "alice"


@pytest.mark.parametrize(
    ("value", "address"),
    [("203.0.113.7 51234 10.0.0.1 22", "203.0.113.7:51234"), ("::1 4 ::1 22", "[::1]:4"), ("", "")],
)
def test_the_remote_address_comes_from_ssh_connection(value: str, address: str) -> None:
    """SSH_CONNECTION is "client_ip client_port server_ip server_port"."""
    assert remote_address(value) == address

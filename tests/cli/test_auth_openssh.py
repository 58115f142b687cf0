"""`lockctl auth sign --format=openssh` against a real TLS `lockd auth`: an OpenSSH key and
a user certificate from the cluster's SSH user CA, naming the user, roles and devices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from lockd.pki_openssh import SSHUserIdentity, load_certificate, verified_identity
from tests.cli.helpers import AuthServer, lockctl

PREFIX = "The cluster's SSH user CA (a line for sshd's TrustedUserCAKeys): "


def test_sign_openssh_writes_a_key_and_a_certificate_of_the_users_identity(
    tls_server: AuthServer, tmp_path: Path
) -> None:
    """The files ssh -i expects, mode 0600; the certificate verifies against the CA line
    printed, for the given logins only, with the user's roles and the devices given."""
    created = lockctl(tls_server, "create", "-f", "-", stdin=ROLE)
    assert created.returncode == 0, created.stderr
    added = lockctl(tls_server, "users", "add", "olivia", "--roles=ssh-dev")
    assert added.returncode == 0, added.stderr
    out = tmp_path / "olivia"
    signed = lockctl(
        tls_server,
        "auth",
        "sign",
        "--format=openssh",
        "--user=olivia",
        "--logins=root,deploy",
        "--mfa-device=mfa-9",
        f"--out={out}",
    )
    assert signed.returncode == 0, signed.stderr
    first, second = signed.stdout.splitlines()
    assert first.startswith('The OpenSSH certificate for user "olivia" (roles: ssh-dev; logins:')
    assert second.startswith(PREFIX)
    ca_line = second.removeprefix(PREFIX).encode()
    for path in (out, out.with_name("olivia.pub"), out.with_name("olivia-cert.pub")):
        assert path.stat().st_mode & 0o777 == 0o600
    serialization.load_ssh_private_key(out.read_bytes(), password=None)
    certificate = load_certificate(out.with_name("olivia-cert.pub").read_bytes())
    trusted = (b" ".join(ca_line.split()[:2]),)
    now = datetime.now(UTC)
    assert verified_identity(certificate, trusted, "deploy", now) == SSHUserIdentity(
        "olivia", ("ssh-dev",), mfa_device="mfa-9"
    )
    again = lockctl(tls_server, "auth", "sign", "--format=openssh", "--user=olivia", f"--out={out}")
    assert again.returncode == 2
    assert "exists; pass --overwrite" in again.stderr


ROLE = "kind: role\nversion: v7\nmetadata: {name: ssh-dev}\nspec: {}\n"

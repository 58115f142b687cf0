"""Who an SSH session is: the OS login and the lockd user, from what sshd tells the hook.

sshd runs the hook as the login, with `SSH_CONNECTION` (the client's address) and, with
`ExposeAuthInfo yes`, `SSH_USER_AUTH`: a file listing the methods and public credentials
the connection authenticated with, one per line (`publickey <type> <base64>`). A
certificate there that the cluster's SSH user CA signed names the lockd user, roles, MFA
device and trusted device. For a plain key, `agent_service.ssh_logins` maps the login to
a lockd user. Without either, the session is checked on the login (and the node's
`server_id`, which the agent adds) only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lockd.domain.addresses import join_host_port
from lockd.domain.errors import UnauthenticatedError
from lockd.domain.identity import Identity
from lockd.pki_openssh import load_certificate, load_trusted_ca_keys, verified_identity

CERT_TYPE_SUFFIX = "-cert-v01@openssh.com"


@dataclass(frozen=True, slots=True)
class SSHSession:
    """What the hook knows about its connection."""

    identity: Identity
    remote_address: str  # "203.0.113.7:51234", "" when sshd did not say
    source: str  # how the lockd user was found: "certificate", "mapping" or "login"


def certificate_lines(auth_info: str) -> list[bytes]:
    """The certificates among the `publickey` credentials of an SSH_USER_AUTH listing."""
    lines = []
    for line in auth_info.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "publickey" and fields[1].endswith(CERT_TYPE_SUFFIX):
            lines.append(f"{fields[1]} {fields[2]}".encode())
    return lines


def remote_address(ssh_connection: str) -> str:
    """`SSH_CONNECTION` is "client_ip client_port server_ip server_port"."""
    fields = ssh_connection.split()
    return join_host_port(fields[0], int(fields[1])) if len(fields) == 4 else ""


def session_of(
    login: str,
    environment: Mapping[str, str],
    trusted_ca_file: Path,
    logins: Mapping[str, str],
    now: datetime,
) -> SSHSession:
    """The identity of this connection; UnauthenticatedError when its certificate is bad.

    A certificate that names a lockd identity but fails the checks refuses the session
    rather than falling back to the login: a user must not dodge a user lock by
    presenting a broken certificate.
    """
    address = remote_address(environment.get("SSH_CONNECTION", ""))
    certificates = certificate_lines(_auth_info(environment))
    if certificates:
        # With several publickey steps (AuthenticationMethods), the last one counts.
        identity = certificate_identity(login, certificates[-1], trusted_ca_file, now)
        return SSHSession(identity, address, "certificate")
    identity = mapped_identity(login, logins)
    return SSHSession(identity, address, "mapping" if identity.user else "login")


def certificate_identity(
    login: str, certificate: bytes, trusted_ca_file: Path, now: datetime
) -> Identity:
    """Who an OpenSSH certificate line (`type base64`) says the session is; raises
    UnauthenticatedError unless the cluster's SSH user CA signed it for `login`."""
    trusted = _trusted_keys(trusted_ca_file)
    named = verified_identity(load_certificate(certificate), trusted, login, now)
    return Identity(
        user=named.user,
        roles=named.roles,
        login=login,
        mfa_device=named.mfa_device,
        device=named.device,
    )


def mapped_identity(login: str, logins: Mapping[str, str]) -> Identity:
    """A plain key's session: the lockd user the login maps to, if any."""
    return Identity(user=logins.get(login, ""), login=login)


def _auth_info(environment: Mapping[str, str]) -> str:
    # The pam_exec hook sees the same listing in SSH_AUTH_INFO_0 (PAM environment).
    if "SSH_AUTH_INFO_0" in environment:
        return environment["SSH_AUTH_INFO_0"]
    path = environment.get("SSH_USER_AUTH", "")
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UnauthenticatedError(f"cannot read SSH_USER_AUTH {path}: {error.strerror}") from None


def _trusted_keys(path: Path) -> tuple[bytes, ...]:
    try:
        return load_trusted_ca_keys(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UnauthenticatedError(
            f"cannot read the SSH user CA keys {path} (agent_service.ssh_user_ca_keys): "
            f"{error.strerror}"
        ) from None

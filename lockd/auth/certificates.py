"""Issuing identities: user certificates, agent join tokens and agent certificates.

Users get a certificate naming them and the roles they hold *now* (a change of roles
takes effect at the next sign, as in Teleport). Agents join with a one-time token: the
store keeps only its SHA-256, consumes it atomically, and the agent receives a
certificate bound to its server_id, which it renews over its mTLS connection. A locked
agent can neither join nor renew.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from lockd.auth.auth_service import AuthService
from lockd.domain import rbac
from lockd.domain.errors import AccessDeniedError, NotFoundError, ValidationError
from lockd.domain.lock import access_denied_message, validate_name
from lockd.domain.ports import JoinToken
from lockd.domain.rbac import Caller, CallerKind
from lockd.domain.resources import Kind, Verb
from lockd.domain.timeparse import format_duration
from lockd.pki import CertIdentity, ClusterCA, IdentityKind, cert_pem
from lockd.pki_openssh import SignedSSHCertificate, SSHUserCA, SSHUserIdentity

AGENT_TOKEN_KIND = "agent"
MAX_USER_TTL = timedelta(days=30)
MAX_TOKEN_TTL = timedelta(days=7)
DEFAULT_AGENT_CERT_TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    certificate_pem: bytes
    ca_certificate_pem: bytes
    roles: tuple[str, ...]
    not_after: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_ttl(ttl: timedelta, limit: timedelta, what: str) -> None:
    if ttl <= timedelta(0):
        raise ValidationError(f"{what} TTL must be positive")
    if ttl > limit:
        raise ValidationError(f"{what} TTL must not exceed {format_duration(limit)}")


class IdentityService:
    def __init__(
        self,
        ca: ClusterCA,
        auth: AuthService,
        agent_cert_ttl: timedelta = DEFAULT_AGENT_CERT_TTL,
    ) -> None:
        self.ca = ca
        self.auth = auth
        self.agent_cert_ttl = agent_cert_ttl
        self.ssh_ca = SSHUserCA.derived_from(ca.key, auth.cluster.name)

    def _issued(self, csr_pem: bytes, identity: CertIdentity, ttl: timedelta) -> IssuedCertificate:
        cert = self.ca.sign_csr(csr_pem, identity, self.auth.clock.now(), ttl)
        return IssuedCertificate(
            cert_pem(cert), self.ca.cert_pem, identity.roles, cert.not_valid_after_utc
        )

    async def sign_user(
        self, caller: Caller, user_name: str, ttl: timedelta, csr_pem: bytes
    ) -> IssuedCertificate:
        """A certificate for `user_name` with the roles the user has now.

        Issuing credentials for a user needs `create` and `update` on `user`.
        """
        self.auth.authorize(caller, Kind.USER, (Verb.CREATE, Verb.UPDATE))
        _check_ttl(ttl, MAX_USER_TTL, "certificate")
        user = await self.auth.store.get_user(user_name)
        if user is None:
            raise NotFoundError(f'user "{user_name}" not found')
        return self._issued(csr_pem, CertIdentity(IdentityKind.USER, user.name, user.roles), ttl)

    async def sign_ssh_user(
        self,
        caller: Caller,
        user_name: str,
        ttl: timedelta,
        public_key: bytes,
        principals: tuple[str, ...],
        devices: tuple[str, str] = ("", ""),
    ) -> SignedSSHCertificate:
        """An OpenSSH user certificate for `user_name` with the roles the user has now.

        `devices` is the MFA device and trusted device to record, when known. Needs the
        same rights as `sign_user`.
        """
        self.auth.authorize(caller, Kind.USER, (Verb.CREATE, Verb.UPDATE))
        _check_ttl(ttl, MAX_USER_TTL, "certificate")
        user = await self.auth.store.get_user(user_name)
        if user is None:
            raise NotFoundError(f'user "{user_name}" not found')
        for login in principals:
            validate_name(login, "login")
        identity = SSHUserIdentity(user.name, user.roles, *devices)
        return self.ssh_ca.sign(public_key, identity, principals, self.auth.clock.now(), ttl)

    async def create_token(self, caller: Caller, kind: str, ttl: timedelta) -> tuple[str, datetime]:
        """A fresh one-time join token (the secret is returned once and never stored)."""
        self.auth.authorize(caller, Kind.TOKEN, rbac.CREATE)
        if kind != AGENT_TOKEN_KIND:
            raise ValidationError(f'token type "{kind}" not supported (supported: agent)')
        _check_ttl(ttl, MAX_TOKEN_TTL, "token")
        token = secrets.token_hex(16)
        expires = self.auth.clock.now() + ttl
        await self.auth.store.put_token(JoinToken(token_digest(token), kind, expires, caller.name))
        return token, expires

    async def join_agent(
        self, token: str, server_id: str, csr_pem: bytes, caller: Caller | None = None
    ) -> IssuedCertificate:
        """Exchange a join token for an agent certificate bound to `server_id`.

        `caller` is who called, when the port authenticates callers (the mTLS port, the
        admin socket): locks apply to it as to every authenticated call.
        """
        if caller is not None:
            self.auth.check_not_locked(caller)
        validate_name(server_id, "server_id")
        await self.auth.store.consume_token(
            token_digest(token), AGENT_TOKEN_KIND, self.auth.clock.now()
        )
        self.auth.check_not_locked(Caller.agent(server_id))  # refused and audited
        identity = CertIdentity(IdentityKind.AGENT, server_id)
        return self._issued(csr_pem, identity, self.agent_cert_ttl)

    async def renew_agent(self, caller: Caller, csr_pem: bytes) -> IssuedCertificate:
        # Locks first, for every caller (SPEC §6): a locked user learns it is locked.
        self.auth.check_not_locked(caller)
        if caller.kind is not CallerKind.AGENT:
            raise AccessDeniedError(access_denied_message("renew", "certificate"))
        identity = CertIdentity(IdentityKind.AGENT, caller.server_id)
        return self._issued(csr_pem, identity, self.agent_cert_ttl)

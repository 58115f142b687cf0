"""Issuing identities: user certificates, agent join tokens and agent certificates.

Users get a certificate naming them and the roles they hold *now* (a change of roles
takes effect at the next sign, as in Teleport). Agents join with a one-time token: the
store keeps only its SHA-256, consumes it atomically, and the agent receives a
certificate bound to its server_id, which it renews over its mTLS connection. A locked
agent can neither join nor renew.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from lockd.auth.auth_service import AuthService
from lockd.domain import rbac
from lockd.domain.errors import AccessDeniedError, NotFoundError, ValidationError
from lockd.domain.identity import Identity
from lockd.domain.lock import access_denied_message, validate_name
from lockd.domain.ports import JoinToken
from lockd.domain.rbac import Caller, CallerKind
from lockd.domain.resources import Kind, Verb
from lockd.domain.timeparse import format_duration, format_rfc3339
from lockd.obs.audit import (
    AGENT_JOINED,
    AGENT_RENEWED,
    IDENTITY_SIGNED,
    TOKEN_CREATED,
    TOKEN_DELETED,
    TOKEN_USED,
    change,
    token_id,
)
from lockd.pki import (
    CertIdentity,
    ClusterCA,
    DeviceAttributes,
    IdentityKind,
    cert_pem,
    requested_attributes,
)
from lockd.pki_openssh import SignedSSHCertificate, SSHUserCA, SSHUserIdentity

AGENT_TOKEN_KIND = "agent"
MAX_USER_TTL = timedelta(days=30)
MAX_TOKEN_TTL = timedelta(days=7)
DEFAULT_AGENT_CERT_TTL = timedelta(hours=24)
MIN_TOKEN_PREFIX = 6
_HEX = re.compile("[0-9a-f]+")


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


def _check_attributes(attributes: DeviceAttributes) -> None:
    for value, what in ((attributes.mfa_device, "mfa_device"), (attributes.device, "device")):
        if value:
            validate_name(value, what)
    for request in attributes.access_requests:
        validate_name(request, "access_request")
    if len(set(attributes.access_requests)) != len(attributes.access_requests):
        raise ValidationError("an access request is named twice")


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

        The MFA device, trusted device and access requests the CSR asks for (subject
        attributes, `lockd.pki`) are carried too, after the same lock check as the rest.
        Issuing credentials for a user needs `create` and `update` on `user`.
        """
        self.auth.authorize(caller, Kind.USER, (Verb.CREATE, Verb.UPDATE))
        _check_ttl(ttl, MAX_USER_TTL, "certificate")
        user = await self.auth.store.get_user(user_name)
        if user is None:
            raise NotFoundError(f'user "{user_name}" not found')
        attributes = requested_attributes(csr_pem)
        _check_attributes(attributes)
        self.refuse_locked_identity(caller, attributes.identity(user.name, user.roles))
        identity = CertIdentity(IdentityKind.USER, user.name, user.roles, attributes)
        issued = self._issued(csr_pem, identity, ttl)
        fields: dict[str, object] = {
            "user": user.name,
            "roles": list(user.roles),
            "not_after": format_rfc3339(issued.not_after),
        }
        if attributes.mfa_device:
            fields["mfa_device"] = attributes.mfa_device
        if attributes.device:
            fields["device"] = attributes.device
        if attributes.access_requests:
            fields["access_requests"] = list(attributes.access_requests)
        self._audit(IDENTITY_SIGNED, fields, caller.name, caller.source)
        return issued

    def refuse_locked_identity(self, caller: Caller, identity: Identity) -> None:
        """No credentials for a locked identity (as Teleport): a lock in force on the
        user, one of its roles, or — where the credential names them — its MFA device,
        trusted device or access requests refuses issuance with the lock's message
        (PERMISSION_DENIED, audited as access.denied by `caller`)."""
        self.auth.check_identity_not_locked(identity, caller)

    def _audit(self, event: str, fields: Mapping[str, object], by: str, source: str) -> None:
        auth = self.auth
        auth.audit.emit(change(event, fields, by, source, auth.cluster.name, auth.clock.now()))

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
        mfa_device, device = devices
        self.refuse_locked_identity(
            caller,
            Identity(user=user.name, roles=user.roles, mfa_device=mfa_device, device=device),
        )
        identity = SSHUserIdentity(user.name, user.roles, *devices)
        signed = self.ssh_ca.sign(public_key, identity, principals, self.auth.clock.now(), ttl)
        fields = {"user": user.name, "roles": list(user.roles), "format": "openssh"}
        self._audit(IDENTITY_SIGNED, fields, caller.name, caller.source)
        return signed

    async def create_token(self, caller: Caller, kind: str, ttl: timedelta) -> tuple[str, datetime]:
        """A fresh one-time join token (the secret is returned once and never stored)."""
        self.auth.authorize(caller, Kind.TOKEN, rbac.CREATE)
        if kind != AGENT_TOKEN_KIND:
            raise ValidationError(f'token type "{kind}" not supported (supported: agent)')
        _check_ttl(ttl, MAX_TOKEN_TTL, "token")
        token = secrets.token_hex(16)
        expires = self.auth.clock.now() + ttl
        digest = token_digest(token)
        await self.auth.store.put_token(JoinToken(digest, kind, expires, caller.name))
        fields = {"token": token_id(digest), "type": kind, "expires": format_rfc3339(expires)}
        self._audit(TOKEN_CREATED, fields, caller.name, caller.source)
        return token, expires

    async def list_tokens(self, caller: Caller) -> list[JoinToken]:
        """The join tokens that can still be used (digests only: secrets are never kept)."""
        self.auth.authorize(caller, Kind.TOKEN, rbac.LIST)
        return await self.auth.store.list_tokens(self.auth.clock.now())

    async def delete_token(self, caller: Caller, prefix: str) -> JoinToken:
        """Revoke the one usable token whose digest starts with `prefix` (what `tokens ls`
        shows); the token revoked."""
        self.auth.authorize(caller, Kind.TOKEN, rbac.DELETE)
        if len(prefix) < MIN_TOKEN_PREFIX or not _HEX.fullmatch(prefix):
            raise ValidationError(
                f"a token is named by at least {MIN_TOKEN_PREFIX} lowercase hex digits of "
                "its SHA-256 (lockctl tokens ls shows them)"
            )
        tokens = await self.auth.store.list_tokens(self.auth.clock.now())
        matches = [token for token in tokens if token.digest.startswith(prefix)]
        if not matches:
            raise NotFoundError(f'no usable join token starts with "{prefix}"')
        if len(matches) > 1:
            raise ValidationError(f'"{prefix}" names {len(matches)} tokens; give more digits')
        await self.auth.store.delete_token(matches[0].digest)
        fields = {"token": token_id(matches[0].digest), "type": matches[0].kind}
        self._audit(TOKEN_DELETED, fields, caller.name, caller.source)
        return matches[0]

    async def join_agent(
        self,
        token: str,
        server_id: str,
        csr_pem: bytes,
        caller: Caller | None = None,
        source: str = "",
    ) -> IssuedCertificate:
        """Exchange a join token for an agent certificate bound to `server_id`.

        `caller` is who called, when the port authenticates callers (the mTLS port, the
        admin socket): locks apply to it as to every authenticated call. `source` is the
        peer address, for the audit trail.
        """
        if caller is not None:
            self.auth.check_not_locked(caller)
        validate_name(server_id, "server_id")
        digest = token_digest(token)
        await self.auth.store.consume_token(digest, AGENT_TOKEN_KIND, self.auth.clock.now())
        used = {"token": token_id(digest), "server_id": server_id}
        self._audit(TOKEN_USED, used, server_id, source)
        agent = replace(Caller.agent(server_id), source=source)
        self.auth.check_not_locked(agent)  # refused and audited
        identity = CertIdentity(IdentityKind.AGENT, server_id)
        issued = self._issued(csr_pem, identity, self.agent_cert_ttl)
        joined = {"server_id": server_id, "not_after": format_rfc3339(issued.not_after)}
        self._audit(AGENT_JOINED, {**joined, "token": token_id(digest)}, server_id, source)
        return issued

    async def renew_agent(self, caller: Caller, csr_pem: bytes) -> IssuedCertificate:
        # Locks first, for every caller (SPEC §6): a locked user learns it is locked.
        self.auth.check_not_locked(caller)
        if caller.kind is not CallerKind.AGENT:
            raise AccessDeniedError(access_denied_message("renew", "certificate"))
        identity = CertIdentity(IdentityKind.AGENT, caller.server_id)
        issued = self._issued(csr_pem, identity, self.agent_cert_ttl)
        fields = {"server_id": caller.server_id, "not_after": format_rfc3339(issued.not_after)}
        self._audit(AGENT_RENEWED, fields, caller.name, caller.source)
        return issued

"""Credentials for locked identities, and the audit trail of security changes (issue 15,
items 4 and 12), against a real TLS auth server on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from lockd.client.join import renew
from lockd.domain.errors import AccessDeniedError
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode
from lockd.domain.presets import PRESET_ROLES
from lockd.domain.resources import ClusterAuthPreference, Role, User
from lockd.obs.audit import AuditEvent
from lockd.pki import make_csr, new_key
from lockd.pki_openssh import public_key_line
from tests.security.helpers import SecureCluster

HOUR = timedelta(hours=1)
IN_FORCE = "is in force: stolen laptop"


async def _sign(cluster: SecureCluster, user: str) -> None:
    await cluster.admin().sign_user_identity(user, HOUR, make_csr(new_key(), user))


def _last(cluster: SecureCluster, event: str) -> AuditEvent:
    events = cluster.audit.of(event)
    assert events, f"no {event} audit line"
    return events[-1]


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (LockTarget(user="alice"), 'lock targeting User:"alice" is in force: stolen laptop'),
        (LockTarget(role="dev"), 'lock targeting Role:"dev" is in force: stolen laptop'),
    ],
)
async def test_a_locked_user_or_role_gets_no_certificate(
    cluster: SecureCluster, target: LockTarget, text: str
) -> None:
    """`auth sign` for a user who is locked, or holds a locked role, is refused with the
    lock's exact message (PERMISSION_DENIED) and audited; after the lock goes it works."""
    admin = cluster.admin()
    await admin.put_user(User("alice", ("dev",)), PutMode.UPSERT)
    await admin.create_lock(Lock("l1", target, message="stolen laptop"))
    with pytest.raises(AccessDeniedError) as refused:
        await _sign(cluster, "alice")
    assert str(refused.value) == text
    denied = _last(cluster, "access.denied").to_dict()
    assert (denied["user"], denied["reason"], denied["lock"]) == ("alice", text, "l1")
    assert (denied["by"], str(denied["source"]).startswith("unix:")) == ("Admin", True)
    assert not cluster.audit.of("identity.signed")
    await admin.delete_lock("l1")
    await _sign(cluster, "alice")
    assert _last(cluster, "identity.signed").fields["user"] == "alice"


@pytest.mark.parametrize(
    ("target", "text"),
    [
        (LockTarget(user="alice"), 'lock targeting User:"alice" is in force: stolen laptop'),
        (LockTarget(role="dev"), 'lock targeting Role:"dev" is in force: stolen laptop'),
        (
            LockTarget(device="laptop-7"),
            'lock targeting Device:"laptop-7" is in force: stolen laptop',
        ),
        (
            LockTarget(mfa_device="key-3"),
            'lock targeting MFADevice:"key-3" is in force: stolen laptop',
        ),
    ],
)
async def test_a_locked_identity_gets_no_openssh_certificate(
    cluster: SecureCluster, target: LockTarget, text: str
) -> None:
    """An OpenSSH certificate names the user, roles, MFA device and trusted device: a lock
    on any of them refuses it with the lock's message; without the lock it is issued and
    audited."""
    admin = cluster.admin()
    await admin.put_user(User("alice", ("dev",)), PutMode.UPSERT)
    public_key = public_key_line(ed25519.Ed25519PrivateKey.generate().public_key())
    await admin.create_lock(Lock("l1", target, message="stolen laptop"))
    with pytest.raises(AccessDeniedError) as refused:
        await admin.sign_ssh_user_certificate(
            "alice", HOUR, public_key, ("alice",), mfa_device="key-3", device="laptop-7"
        )
    assert str(refused.value) == text
    assert not cluster.audit.of("identity.signed")
    await admin.delete_lock("l1")
    signed = await admin.sign_ssh_user_certificate(
        "alice", HOUR, public_key, ("alice",), mfa_device="key-3", device="laptop-7"
    )
    assert signed.principals == ("alice",)
    assert _last(cluster, "identity.signed").fields["format"] == "openssh"


async def test_security_changes_are_audited_with_actor_and_source(cluster: SecureCluster) -> None:
    """Role and user put/delete, the cluster auth preference, signing and tokens, made
    by an editor over mTLS: one audit line each, naming the editor and its address."""
    editor = next(role for role in PRESET_ROLES if role.name == "editor")
    await cluster.admin().put_role(editor, PutMode.UPSERT)
    edith = await cluster.user("edith", ("editor",))
    client = cluster.client(edith.credentials())
    await client.put_role(Role("ops"), PutMode.CREATE)
    await client.put_role(Role("ops"), PutMode.UPSERT)
    await client.put_user(User("bob", ("ops",)), PutMode.CREATE)
    await client.sign_user_identity("bob", HOUR, make_csr(new_key(), "bob"))
    await client.set_cluster_auth_preference(ClusterAuthPreference(LockingMode.STRICT))
    await client.create_agent_token(HOUR)
    await client.delete_user("bob")
    await client.delete_role("ops")
    expected: dict[str, dict[str, object]] = {
        "role.created": {"name": "ops"},
        "role.updated": {"name": "ops"},
        "user.created": {"name": "bob", "roles": ["ops"]},
        "identity.signed": {"user": "bob", "roles": ["ops"]},
        "cluster_auth_preference.updated": {"locking_mode": "strict"},
        "token.created": {"type": "agent"},
        "user.deleted": {"name": "bob"},
        "role.deleted": {"name": "ops"},
    }
    for event, fields in expected.items():
        line = _last(cluster, event).to_dict()
        assert {key: line[key] for key in fields} == fields, line
        assert line["by"] == "edith"
        assert str(line["source"]).startswith("ipv4:127.0.0.1:"), line
        assert list(line)[:4] == ["time", "event", "code", "cluster"]


async def test_agent_join_token_use_and_renewal_are_audited(cluster: SecureCluster) -> None:
    """A join spends a token (token.used) and admits an agent (agent.joined); a renewal
    is agent.renewed — each with the agent's server_id and its address."""
    node = await cluster.agent("node-1")
    created = _last(cluster, "token.created").fields["token"]
    used = _last(cluster, "token.used").to_dict()
    assert (used["token"], used["server_id"], used["by"]) == (created, "node-1", "node-1")
    joined = _last(cluster, "agent.joined").to_dict()
    assert (joined["server_id"], joined["token"]) == ("node-1", created)
    await renew(cluster.address, node, "node-1")
    renewed = _last(cluster, "agent.renewed").to_dict()
    for line in (used, joined, renewed):
        assert str(line["source"]).startswith("ipv4:127.0.0.1:"), line
    assert renewed["server_id"] == "node-1"

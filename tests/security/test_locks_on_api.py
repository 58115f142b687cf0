"""Locks apply to API callers: every authenticated call, admins and agents included (SPEC §6).

A locked caller gets PERMISSION_DENIED with SPEC §3's text on every RPC, before RBAC. A
locked agent's watch stream ends with Reset(LOCKED) right after the batch that carries
its lock (so its own view sees the lock and ends its sessions), it is forgotten from the
cluster status, and it can neither reconnect, renew its certificate nor join again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf.duration_pb2 import Duration

from lockd.client.join import join, renew
from lockd.domain.errors import AccessDeniedError
from lockd.domain.lock import Lock, LockTarget
from lockd.pki import make_csr, new_key
from lockd.pki_openssh import public_key_line
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import identity_service_pb2 as identity_pb
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1 import token_service_pb2 as token_pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.v1.identity_service_pb2_grpc import IdentityServiceStub
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from lockd.v1.token_service_pb2_grpc import TokenServiceStub
from tests.security.helpers import RawWatch, SecureCluster
from tests.support import eventually

ALICE_LOCKED = 'lock targeting User:"alice" is in force: Suspicious activity.'
HOUR = Duration(seconds=3600)
SERVICES = (lock_pb, cluster_pb, identity_pb, token_pb)


def valid_requests(join_token: str) -> dict[str, Any]:
    """A well-formed request for every unary method of the three API services."""
    csr = make_csr(new_key(), "x")
    lock = res_pb.Lock(name="l2", target=res_pb.LockTarget(user="mallory"))
    return {
        "LockService/CreateLock": lock_pb.CreateLockRequest(lock=lock),
        "LockService/UpsertLock": lock_pb.UpsertLockRequest(lock=lock),
        "LockService/GetLock": lock_pb.GetLockRequest(name="alice-lock"),
        "LockService/ListLocks": lock_pb.ListLocksRequest(),
        "LockService/DeleteLock": lock_pb.DeleteLockRequest(name="alice-lock"),
        "ClusterService/GetClusterAuthPreference": cluster_pb.GetClusterAuthPreferenceRequest(),
        "ClusterService/SetClusterAuthPreference": cluster_pb.SetClusterAuthPreferenceRequest(
            cluster_auth_preference=res_pb.ClusterAuthPreference(
                locking_mode=res_pb.LOCKING_MODE_STRICT
            )
        ),
        "ClusterService/GetRole": cluster_pb.GetRoleRequest(name="locksmith"),
        "ClusterService/ListRoles": cluster_pb.ListRolesRequest(),
        "ClusterService/PutRole": cluster_pb.PutRoleRequest(role=res_pb.Role(name="extra")),
        "ClusterService/DeleteRole": cluster_pb.DeleteRoleRequest(name="dev"),
        "ClusterService/GetUser": cluster_pb.GetUserRequest(name="alice"),
        "ClusterService/ListUsers": cluster_pb.ListUsersRequest(),
        "ClusterService/PutUser": cluster_pb.PutUserRequest(user=res_pb.User(name="bob")),
        "ClusterService/DeleteUser": cluster_pb.DeleteUserRequest(name="alice"),
        "ClusterService/GetClusterStatus": cluster_pb.GetClusterStatusRequest(),
        "IdentityService/SignUserIdentity": identity_pb.SignUserIdentityRequest(
            user="alice", ttl=HOUR, csr_pem=csr
        ),
        "IdentityService/SignSSHUserCertificate": identity_pb.SignSSHUserCertificateRequest(
            user="alice",
            ttl=HOUR,
            public_key=public_key_line(ed25519.Ed25519PrivateKey.generate().public_key()),
            principals=["alice"],
        ),
        "IdentityService/CreateToken": identity_pb.CreateTokenRequest(
            type=identity_pb.TOKEN_TYPE_AGENT, ttl=HOUR
        ),
        "IdentityService/JoinAgent": identity_pb.JoinAgentRequest(
            token=join_token, server_id="node-9", csr_pem=csr
        ),
        "TokenService/ListTokens": token_pb.ListTokensRequest(),
        "TokenService/DeleteToken": token_pb.DeleteTokenRequest(id_prefix="abcdef"),
        "IdentityService/RenewAgentCertificate": identity_pb.RenewAgentCertificateRequest(
            csr_pem=csr
        ),
    }


def every_unary_method() -> set[str]:
    return {
        f"{service.name}/{method.name}"
        for module in SERVICES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if not method.client_streaming and not method.server_streaming
    }


def stub_method(channel: grpc.aio.Channel, name: str) -> Any:
    service, method = name.split("/")
    stubs = {
        "LockService": LockServiceStub,
        "ClusterService": ClusterServiceStub,
        "IdentityService": IdentityServiceStub,
        "TokenService": TokenServiceStub,
    }
    return getattr(stubs[service](channel), method)


async def refusal(rpc: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await rpc(request, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


async def test_a_locked_user_is_refused_on_every_rpc(cluster: SecureCluster) -> None:
    """Every LockService, ClusterService and IdentityService call, and WatchLocks."""
    admin = cluster.admin()
    alice = await cluster.user("alice", ("locksmith",))
    token, _ = await admin.create_agent_token(timedelta(hours=1))
    requests = valid_requests(token)
    assert set(requests) == every_unary_method()
    await admin.create_lock(Lock("alice-lock", LockTarget(user="alice"), "Suspicious activity."))

    channel = cluster.channel(alice.credentials())
    for name, request in requests.items():
        outcome = await refusal(stub_method(channel, name), request)
        assert outcome == (grpc.StatusCode.PERMISSION_DENIED, ALICE_LOCKED), name
    watch = RawWatch(channel, "alice-watch")
    await watch.hello()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await watch.read()
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED,
        ALICE_LOCKED,
    )
    # Nothing happened: the join token refused on the locked call is still good.
    pin = (await admin.status()).ca_pin
    joined = await join(cluster.join_address, token, "node-9", pin)
    assert joined.certificate().subject.rfc4514_string() == "OU=agent,CN=node-9"
    assert [lock.name for lock in await admin.list_locks()] == ["alice-lock"]


async def test_a_lock_on_the_admin_refuses_the_admin_socket_until_it_expires(
    cluster: SecureCluster,
) -> None:
    """The local admin is "Admin" and locks apply to it too; only expiry (or a user) lifts it."""
    admin = cluster.admin()
    expires = cluster.clock.now() + timedelta(seconds=6)
    lock, _ = await admin.create_lock(Lock("admin-lock", LockTarget(user="Admin"), "", expires))
    message = 'lock targeting User:"Admin" is in force'
    calls: tuple[Callable[[], Awaitable[object]], ...] = (
        admin.status,
        admin.list_locks,
        lambda: admin.delete_lock("admin-lock"),
        lambda: admin.create_agent_token(timedelta(hours=1)),
    )
    for call in calls:
        with pytest.raises(AccessDeniedError) as caught:
            await call()
        assert str(caught.value) == message
    assert lock.expires is not None
    cluster.clock.advance((lock.expires - cluster.clock.now()).total_seconds() + 0.2)
    await eventually(lambda: _unlocked(cluster), what="the admin lock to expire")

    async def expired() -> bool:
        return await admin.list_locks() == []

    await eventually(expired, what="the expiry reaper to delete the admin lock")


async def _unlocked(cluster: SecureCluster) -> bool:
    try:
        await cluster.admin().status()
    except AccessDeniedError:
        return False
    return True


async def test_a_role_lock_refuses_every_user_holding_that_role(cluster: SecureCluster) -> None:
    """{role: dev} hits a user whose certificate names dev, not one without it."""
    admin = cluster.admin()
    dev = cluster.client((await cluster.user("dana", ("locksmith", "dev"))).credentials())
    ops = cluster.client((await cluster.user("olga", ("locksmith",))).credentials())
    await admin.create_lock(Lock("dev-lock", LockTarget(role="dev"), "freeze"))
    with pytest.raises(AccessDeniedError, match=r'^lock targeting Role:"dev" is in force: freeze$'):
        await dev.list_locks()
    assert [lock.name for lock in await ops.list_locks()] == ["dev-lock"]
    await ops.delete_lock("dev-lock")
    assert await dev.list_locks() == []


async def test_a_locked_agent_is_reset_shown_locked_and_refused(cluster: SecureCluster) -> None:
    """Reset(LOCKED) right after its lock's batch; `locked` in the status (not
    connected); no reconnect."""
    admin = cluster.admin()
    node1 = await cluster.agent("node-1")
    node2 = await cluster.agent("node-2")
    watch1 = RawWatch(cluster.channel(node1.credentials()), "node-1")
    watch2 = RawWatch(cluster.channel(node2.credentials()), "node-2")
    for watch in (watch1, watch2):
        await watch.hello()
        await watch.read_until("snapshot_end")
    await eventually(
        lambda: _agents(cluster, {"node-1", "node-2"}), what="both agents in the status"
    )

    await admin.create_lock(Lock("node-lock", LockTarget(server_id="node-1"), "compromised"))
    message = 'lock targeting ServerID:"node-1" is in force: compromised'

    batch = await watch1.read_until("events")
    assert [event.name for event in batch.events.events] == ["node-lock"]
    reset = await watch1.read()
    assert reset.WhichOneof("message") == "reset"
    assert reset.reset.reason == watch_pb.RESET_REASON_LOCKED
    assert reset.reset.detail == message
    assert await watch1.read() is grpc.aio.EOF

    # The other agent sees the lock and goes on (a heartbeat follows, no reset).
    assert [e.name for e in (await watch2.read_until("events")).events.events] == ["node-lock"]
    assert (await watch2.read()).WhichOneof("message") == "heartbeat"
    await eventually(lambda: _locked(cluster, "node-1"), what="node-1 to show as locked")

    again = RawWatch(cluster.channel(node1.credentials()), "node-1")
    await again.hello()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await again.read()
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED,
        message,
    )
    with pytest.raises(AccessDeniedError, match=f"^{message}$"):
        await renew(cluster.address, node1, "node-1")
    token, _ = await admin.create_agent_token(timedelta(hours=1))
    pin = (await admin.status()).ca_pin
    with pytest.raises(AccessDeniedError, match=f"^{message}$"):
        await join(cluster.join_address, token, "node-1", pin)
    assert await _locked(cluster, "node-1")
    watch2.cancel()


async def _agents(cluster: SecureCluster, expected: set[str]) -> bool:
    status = await cluster.admin().status()
    return {agent.server_id for agent in status.agents} == expected


async def _locked(cluster: SecureCluster, server_id: str) -> bool:
    """The status lists the agent as cut off by a lock (and not connected)."""
    status = await cluster.admin().status()
    return any(
        a.server_id == server_id and a.state == "locked" and not a.connected for a in status.agents
    )


async def test_refused_calls_leave_access_denied_audit_lines(cluster: SecureCluster) -> None:
    """access.denied names the caller's identity, the exact reason and the lock."""
    admin = cluster.admin()
    auditor = cluster.client((await cluster.user("audrey", ("auditor",))).credentials())
    alice = cluster.client((await cluster.user("alice", ("locksmith",))).credentials())
    node = await cluster.agent("node-1")
    await admin.create_lock(Lock("alice-lock", LockTarget(user="alice"), "Suspicious activity."))
    await admin.create_lock(Lock("node-lock", LockTarget(server_id="node-1")))
    cluster.audit.events.clear()

    with pytest.raises(AccessDeniedError):
        await auditor.create_lock(Lock("l9", LockTarget(user="x")))
    with pytest.raises(AccessDeniedError):
        await alice.list_locks()
    with pytest.raises(AccessDeniedError):
        await renew(cluster.address, node, "node-1")

    lines = [event.to_dict() for event in cluster.audit.of("access.denied")]
    assert [(line["code"], line["cluster"]) for line in lines] == [("AC001W", "sec.lockd")] * 3
    assert [(line["identity"], line["reason"], line["lock"], line["mode"]) for line in lines] == [
        (
            {"user": "audrey", "roles": ["auditor"]},
            'access denied to perform action "create" on "lock"',
            "",
            "best_effort",
        ),
        ({"user": "alice", "roles": ["locksmith"]}, ALICE_LOCKED, "alice-lock", "best_effort"),
        (
            {"server_id": "node-1"},
            'lock targeting ServerID:"node-1" is in force',
            "node-lock",
            "best_effort",
        ),
    ]

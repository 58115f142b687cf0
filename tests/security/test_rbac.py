"""RBAC over mTLS: the certificate names the caller, its roles decide (SPEC §6)."""

from __future__ import annotations

import grpc
import pytest

from lockd.domain.errors import AccessDeniedError, ValidationError
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.ports import PutMode
from lockd.domain.resources import Role, Rule, User
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from tests.security.helpers import RawWatch, SecureCluster

DENIED_CREATE_LOCK = 'access denied to perform action "create" on "lock"'


async def test_a_role_without_lock_create_is_denied_with_the_spec_message(
    cluster: SecureCluster,
) -> None:
    """PERMISSION_DENIED with exactly SPEC §3's text; nothing is stored."""
    auditor = await cluster.user("audrey", ("auditor",))
    channel = cluster.channel(auditor.credentials())
    request = lock_pb.CreateLockRequest(
        lock=res_pb.Lock(name="l1", target=res_pb.LockTarget(user="mallory"))
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await LockServiceStub(channel).CreateLock(request, timeout=10)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == DENIED_CREATE_LOCK
    assert await cluster.admin().list_locks() == []
    assert await cluster.client(auditor.credentials()).list_locks() == []  # list+read: allowed


async def test_a_locksmith_creates_lists_and_deletes_locks_in_its_own_name(
    cluster: SecureCluster,
) -> None:
    """The locksmith role (every verb on lock) manages locks; created_by is the cert's user."""
    alice = cluster.client((await cluster.user("alice", ("locksmith",))).credentials())
    created, _ = await alice.create_lock(Lock("l1", LockTarget(user="mallory"), "stolen laptop"))
    assert created.created_by == "alice"
    assert [lock.name for lock in await alice.list_locks()] == ["l1"]
    assert (await alice.get_lock("l1")).target == LockTarget(user="mallory")
    await alice.delete_lock("l1")
    assert await alice.list_locks() == []


async def test_a_user_without_roles_may_not_even_list_locks(cluster: SecureCluster) -> None:
    """No rule, no access: listing needs list and read."""
    nobody = cluster.client((await cluster.user("nobody", ())).credentials())
    with pytest.raises(
        AccessDeniedError, match=r'^access denied to perform action "list" on "lock"$'
    ):
        await nobody.list_locks()


async def test_an_agent_may_not_create_locks(cluster: SecureCluster) -> None:
    """Agents only watch and report: their certificate grants no RBAC verb."""
    agent = cluster.client((await cluster.agent("node-1")).credentials())
    with pytest.raises(AccessDeniedError, match=f"^{DENIED_CREATE_LOCK}$"):
        await agent.create_lock(Lock("l1", LockTarget(user="mallory")))


async def test_an_agent_may_watch_only_as_itself(cluster: SecureCluster) -> None:
    """Hello.agent_id other than the certificate's server_id: PERMISSION_DENIED."""
    identity = await cluster.agent("node-1")
    impostor = RawWatch(cluster.channel(identity.credentials()), "node-2")
    await impostor.hello()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await impostor.read()
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == 'agent "node-1" may only watch as itself, not as "node-2"'

    itself = RawWatch(cluster.channel(identity.credentials()), "node-1")
    await itself.hello()
    await itself.read_until("snapshot_end")
    itself.cancel()


async def test_creating_a_lock_needs_update_as_well_as_create(cluster: SecureCluster) -> None:
    """SPEC §6: create or update a lock needs both verbs, for CreateLock too."""
    admin = cluster.admin()
    creator = Role("creator", allow=(Rule(("lock",), ("create", "list", "read")),))
    await admin.put_role(creator, PutMode.UPSERT)
    client = cluster.client((await cluster.user("cris", ("creator",))).credentials())
    with pytest.raises(
        AccessDeniedError, match=r'^access denied to perform action "update" on "lock"$'
    ):
        await client.create_lock(Lock("l1", LockTarget(user="mallory")))


async def test_an_unauthorised_caller_learns_nothing_from_validation(
    cluster: SecureCluster,
) -> None:
    """Permission is checked before the request: a bad lock from a roleless user is
    PERMISSION_DENIED, not INVALID_ARGUMENT."""
    nobody = await cluster.user("nobody", ())
    request = lock_pb.CreateLockRequest(lock=res_pb.Lock(name="bad name/with slash"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await LockServiceStub(cluster.channel(nobody.credentials())).CreateLock(request, timeout=10)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == DENIED_CREATE_LOCK


async def test_agents_may_not_read_the_cluster_status(cluster: SecureCluster) -> None:
    """The status names every agent and its address: not for agents."""
    agent = cluster.client((await cluster.agent("node-2")).credentials())
    with pytest.raises(
        AccessDeniedError,
        match=r'^access denied to perform action "read" on "cluster status"$',
    ):
        await agent.status()


async def test_no_user_may_be_called_admin(cluster: SecureCluster) -> None:
    """ "Admin" is the local admin socket's identity; a user of that name is refused."""
    with pytest.raises(ValidationError, match='user name "Admin" is reserved'):
        await cluster.admin().put_user(User("Admin", ("locksmith",)), PutMode.CREATE)

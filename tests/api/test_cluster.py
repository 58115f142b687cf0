"""ClusterService over real gRPC: roles, users, the cluster auth preference, status."""

from __future__ import annotations

import grpc
import pytest

from lockd import __version__
from lockd.domain.modes import LockingMode
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from tests.api.conftest import Running, Servers
from tests.api.helpers import WatchClient, cluster_status, start_following


async def _code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value.code(), raised.value.details() or ""


def _role(
    name: str, *verbs: str, mode: res_pb.LockingMode.ValueType = res_pb.LOCKING_MODE_UNSPECIFIED
) -> res_pb.Role:
    return res_pb.Role(
        name=name,
        allow_rules=[res_pb.RoleRule(resources=["lock"], verbs=list(verbs) or ["read"])],
        lock_mode=mode,
    )


async def test_roles_can_be_created_read_updated_listed_and_deleted(server: Running) -> None:
    """PutRole honours its mode (CREATE refuses a taken name, UPDATE a missing one), every
    change is a revision that watchers receive, and DeleteRole removes the role."""
    channel = server.channel()
    stub = ClusterServiceStub(channel)
    watcher = await start_following(await WatchClient.open(channel))

    created = await stub.PutRole(
        cluster_pb.PutRoleRequest(role=_role("auditor", "read"), mode=cluster_pb.PUT_MODE_CREATE)
    )
    assert (created.created, created.revision) == (True, 1)
    code, details = await _code_of(
        stub.PutRole(
            cluster_pb.PutRoleRequest(role=_role("auditor"), mode=cluster_pb.PUT_MODE_CREATE)
        )
    )
    assert (code, details) == (grpc.StatusCode.ALREADY_EXISTS, 'role "auditor" already exists')
    code, _ = await _code_of(
        stub.PutRole(
            cluster_pb.PutRoleRequest(role=_role("nobody"), mode=cluster_pb.PUT_MODE_UPDATE)
        )
    )
    assert code is grpc.StatusCode.NOT_FOUND

    strict = _role("auditor", "read", "list", mode=res_pb.LOCKING_MODE_STRICT)
    updated = await stub.PutRole(
        cluster_pb.PutRoleRequest(role=strict, mode=cluster_pb.PUT_MODE_UPDATE)
    )
    assert (updated.created, updated.revision) == (False, 2)
    upserted = await stub.PutRole(cluster_pb.PutRoleRequest(role=_role("admin", "*")))
    assert (upserted.created, upserted.revision) == (True, 3)

    assert (await stub.GetRole(cluster_pb.GetRoleRequest(name="auditor"))).role == strict
    listed = await stub.ListRoles(cluster_pb.ListRolesRequest())
    assert [role.name for role in listed.roles] == ["admin", "auditor"]

    deleted = await stub.DeleteRole(cluster_pb.DeleteRoleRequest(name="admin"))
    assert deleted.revision == 4
    code, _ = await _code_of(stub.GetRole(cluster_pb.GetRoleRequest(name="admin")))
    assert code is grpc.StatusCode.NOT_FOUND
    code, _ = await _code_of(stub.DeleteRole(cluster_pb.DeleteRoleRequest(name="admin")))
    assert code is grpc.StatusCode.NOT_FOUND

    events = await watcher.until(4)
    assert [(e.type, e.kind, e.name) for e in events] == [
        (watch_pb.EVENT_TYPE_PUT, res_pb.RESOURCE_KIND_ROLE, "auditor"),
        (watch_pb.EVENT_TYPE_PUT, res_pb.RESOURCE_KIND_ROLE, "auditor"),
        (watch_pb.EVENT_TYPE_PUT, res_pb.RESOURCE_KIND_ROLE, "admin"),
        (watch_pb.EVENT_TYPE_DELETE, res_pb.RESOURCE_KIND_ROLE, "admin"),
    ]
    assert events[1].resource.role.lock_mode == res_pb.LOCKING_MODE_STRICT
    watcher.client.cancel()


@pytest.mark.parametrize(
    ("role", "message"),
    [
        (res_pb.Role(name=""), "role name must not be empty"),
        (res_pb.Role(name="bad/name"), "may not contain"),
        (
            res_pb.Role(name="r", allow_rules=[res_pb.RoleRule(resources=["lock"], verbs=["fly"])]),
            'unknown verb "fly"',
        ),
        (
            res_pb.Role(name="r", deny_rules=[res_pb.RoleRule(resources=["moon"], verbs=["read"])]),
            'unknown resource "moon"',
        ),
        (res_pb.Role(name="r", lock_mode=99), "not supported"),  # type: ignore[arg-type]
    ],
    ids=["empty name", "bad name", "unknown verb", "unknown resource", "unknown mode"],
)
async def test_an_invalid_role_is_refused_and_nothing_is_stored(
    server: Running, role: res_pb.Role, message: str
) -> None:
    """INVALID_ARGUMENT with a clear message; no revision is committed."""
    channel = server.channel()
    code, details = await _code_of(
        ClusterServiceStub(channel).PutRole(cluster_pb.PutRoleRequest(role=role))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message in details
    assert (await cluster_status(channel)).revision == 0


async def test_users_can_be_created_read_updated_listed_and_deleted(server: Running) -> None:
    """Users follow the same put modes; they are not replicated, so no revision moves."""
    channel = server.channel()
    stub = ClusterServiceStub(channel)
    for role in ("auditor", "admin"):  # a user's roles must exist
        await stub.PutRole(cluster_pb.PutRoleRequest(role=res_pb.Role(name=role)))
    alice = res_pb.User(name="alice", roles=["auditor"])
    created = await stub.PutUser(
        cluster_pb.PutUserRequest(user=alice, mode=cluster_pb.PUT_MODE_CREATE)
    )
    assert created.created
    code, _ = await _code_of(
        stub.PutUser(cluster_pb.PutUserRequest(user=alice, mode=cluster_pb.PUT_MODE_CREATE))
    )
    assert code is grpc.StatusCode.ALREADY_EXISTS
    code, _ = await _code_of(
        stub.PutUser(
            cluster_pb.PutUserRequest(user=res_pb.User(name="bob"), mode=cluster_pb.PUT_MODE_UPDATE)
        )
    )
    assert code is grpc.StatusCode.NOT_FOUND

    promoted = res_pb.User(name="alice", roles=["auditor", "admin"])
    updated = await stub.PutUser(
        cluster_pb.PutUserRequest(user=promoted, mode=cluster_pb.PUT_MODE_UPDATE)
    )
    assert not updated.created
    await stub.PutUser(cluster_pb.PutUserRequest(user=res_pb.User(name="bob")))
    assert (await stub.GetUser(cluster_pb.GetUserRequest(name="alice"))).user == promoted
    listed = await stub.ListUsers(cluster_pb.ListUsersRequest())
    assert [user.name for user in listed.users] == ["alice", "bob"]

    await stub.DeleteUser(cluster_pb.DeleteUserRequest(name="bob"))
    code, _ = await _code_of(stub.GetUser(cluster_pb.GetUserRequest(name="bob")))
    assert code is grpc.StatusCode.NOT_FOUND
    code, _ = await _code_of(stub.DeleteUser(cluster_pb.DeleteUserRequest(name="bob")))
    assert code is grpc.StatusCode.NOT_FOUND
    code, _ = await _code_of(
        stub.PutUser(cluster_pb.PutUserRequest(user=res_pb.User(name="x", roles=["a b"])))
    )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert (await cluster_status(channel)).revision == 2  # the two roles only


async def test_the_cluster_auth_preference_defaults_and_can_be_set(server: Running) -> None:
    """The preference starts as best_effort; setting strict commits a revision that
    watchers receive, and reading it back says strict (also as the effective mode)."""
    channel = server.channel()
    stub = ClusterServiceStub(channel)
    watcher = await start_following(await WatchClient.open(channel))
    initial = await stub.GetClusterAuthPreference(cluster_pb.GetClusterAuthPreferenceRequest())
    assert initial.cluster_auth_preference.locking_mode == res_pb.LOCKING_MODE_BEST_EFFORT
    assert initial.effective_locking_mode == res_pb.LOCKING_MODE_BEST_EFFORT

    strict = res_pb.ClusterAuthPreference(locking_mode=res_pb.LOCKING_MODE_STRICT)
    response = await stub.SetClusterAuthPreference(
        cluster_pb.SetClusterAuthPreferenceRequest(cluster_auth_preference=strict)
    )
    assert response.revision == 1
    after = await stub.GetClusterAuthPreference(cluster_pb.GetClusterAuthPreferenceRequest())
    assert after.cluster_auth_preference == strict
    assert after.effective_locking_mode == res_pb.LOCKING_MODE_STRICT

    (event,) = await watcher.until(1)
    assert (event.type, event.kind) == (
        watch_pb.EVENT_TYPE_PUT,
        res_pb.RESOURCE_KIND_CLUSTER_AUTH_PREFERENCE,
    )
    assert event.resource.cluster_auth_preference == strict
    watcher.client.cancel()


async def test_the_static_locking_mode_is_the_effective_mode(servers: Servers) -> None:
    """With auth_service.authentication.locking_mode in the config, that mode is the one in
    effect (SPEC §5: the static config)."""
    server = await servers.start(static_locking_mode=LockingMode.STRICT)
    stub = ClusterServiceStub(server.channel())
    response = await stub.GetClusterAuthPreference(cluster_pb.GetClusterAuthPreferenceRequest())
    assert response.effective_locking_mode == res_pb.LOCKING_MODE_STRICT


async def test_cluster_status_describes_the_server(server: Running) -> None:
    """Name, version, store type and health, epoch and revision."""
    status = await cluster_status(server.channel())
    assert (status.cluster_name, status.version, status.store_type) == (
        "test.lockd",
        __version__,
        "sqlite",
    )
    assert status.store_healthy
    assert len(status.epoch) >= 16
    assert (status.revision, list(status.agents)) == (0, [])


async def test_a_user_whose_role_does_not_exist_is_refused(server: Running) -> None:
    """PutUser naming a missing role is NOT_FOUND `role "<name>" not found`, as
    `lockctl users add` says, and nothing is stored (issue 15, item 11)."""
    stub = ClusterServiceStub(server.channel())
    request = cluster_pb.PutUserRequest(user=res_pb.User(name="carol", roles=["ghost"]))
    code, details = await _code_of(stub.PutUser(request))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, 'role "ghost" not found')
    assert not (await stub.ListUsers(cluster_pb.ListUsersRequest())).users

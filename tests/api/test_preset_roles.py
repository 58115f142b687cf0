"""Preset roles on a real auth server over a SQLite file (issue 15, item 13): created on
the first start only, an edited preset kept, a deleted one not put back."""

from __future__ import annotations

from lockd.domain.presets import PRESET_ROLES
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.wire import convert
from tests.api.conftest import Servers


async def _roles(stub: ClusterServiceStub) -> dict[str, res_pb.Role]:
    listed = await stub.ListRoles(cluster_pb.ListRolesRequest())  # type: ignore[misc]
    return {role.name: role for role in listed.roles}


async def test_presets_are_created_once_and_never_overwritten(servers: Servers) -> None:
    """A fresh store gets access, editor, auditor and locksmith (audited as by lockd);
    after an edit of locksmith and a delete of editor, a restart changes nothing."""
    first = await servers.start(preset_roles=True)
    stub = ClusterServiceStub(first.channel())
    assert await _roles(stub) == {role.name: convert.role_to_pb(role) for role in PRESET_ROLES}
    assert [line.fields["by"] for line in first.audit.of("role.created")] == ["lockd"] * 4
    await stub.PutRole(cluster_pb.PutRoleRequest(role=res_pb.Role(name="locksmith")))
    await stub.DeleteRole(cluster_pb.DeleteRoleRequest(name="editor"))
    await first.close_channels()
    await first.stop()

    again = await servers.start(preset_roles=True)
    roles = await _roles(ClusterServiceStub(again.channel()))
    assert sorted(roles) == ["access", "auditor", "locksmith"]
    assert roles["locksmith"] == res_pb.Role(name="locksmith")
    assert not again.audit.of("role.created")

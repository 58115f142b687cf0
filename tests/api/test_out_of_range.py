"""Out-of-range protobuf values over real gRPC: INVALID_ARGUMENT naming the field.

The review's cases (issue 15, item 8): timestamps past year 9999 or at ±2^40 seconds,
nanos of 1e9 or -1, and enum numbers outside the defined set on PutUser and PutRole.
"""

from __future__ import annotations

import grpc
import pytest

from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1.cluster_service_pb2_grpc import ClusterServiceStub
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from tests.api.conftest import Running
from tests.api.helpers import lock_pb_of

BAD_EXPIRES = [
    (253402300800, 0, "seconds"),
    (1099511627776, 0, "seconds"),
    (-1099511627776, 0, "seconds"),
    (4102444800, 1000000000, "nanos"),
    (4102444800, -1, "nanos"),
]


async def _refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value.code(), raised.value.details() or ""


@pytest.mark.parametrize(("seconds", "nanos", "part"), BAD_EXPIRES)
async def test_create_and_upsert_refuse_an_expiry_a_timestamp_cannot_hold(
    server: Running, seconds: int, nanos: int, part: str
) -> None:
    """CreateLock and UpsertLock with an out-of-range expires answer INVALID_ARGUMENT
    naming lock.expires, not INTERNAL."""
    stub = LockServiceStub(server.channel())
    lock = lock_pb_of("l1")
    lock.expires.seconds, lock.expires.nanos = seconds, nanos
    for call in (
        stub.CreateLock(lock_pb.CreateLockRequest(lock=lock)),
        stub.UpsertLock(lock_pb.UpsertLockRequest(lock=lock)),
    ):
        code, details = await _refusal(call)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith(f"lock.expires: timestamp {part}")


@pytest.mark.parametrize("value", [99, -1, 4])
async def test_put_user_and_put_role_refuse_an_undefined_put_mode(
    server: Running, value: int
) -> None:
    """PutUser and PutRole with a mode number outside PutMode answer INVALID_ARGUMENT
    naming the field."""
    stub = ClusterServiceStub(server.channel())
    calls = (
        stub.PutUser(cluster_pb.PutUserRequest(user=res_pb.User(name="bob"), mode=value)),  # type: ignore[arg-type]
        stub.PutRole(cluster_pb.PutRoleRequest(role=res_pb.Role(name="r"), mode=value)),  # type: ignore[arg-type]
    )
    for call in calls:
        code, details = await _refusal(call)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith(f"mode: unknown enum value {value}")


@pytest.mark.parametrize("value", [99, -1, 4])
async def test_put_role_refuses_an_undefined_locking_mode(server: Running, value: int) -> None:
    """A role whose lock_mode is no LockingMode is INVALID_ARGUMENT naming role.lock_mode."""
    stub = ClusterServiceStub(server.channel())
    role = res_pb.Role(name="r", lock_mode=value)  # type: ignore[arg-type]
    code, details = await _refusal(stub.PutRole(cluster_pb.PutRoleRequest(role=role)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert details == f'role.lock_mode: locking mode "{value}" not supported'

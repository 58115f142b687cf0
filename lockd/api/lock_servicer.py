"""The LockService servicer: create, upsert, get, list and delete locks."""

from __future__ import annotations

from lockd.api.handler import CallerResolver, Context, unary
from lockd.auth.auth_service import AuthService
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import lock_service_pb2_grpc as lock_grpc
from lockd.wire import convert


class LockServicer(lock_grpc.LockServiceServicer):
    def __init__(self, service: AuthService, caller_of: CallerResolver) -> None:
        self._service = service
        self._caller_of = caller_of

    @unary
    async def CreateLock(
        self, request: lock_pb.CreateLockRequest, context: Context
    ) -> lock_pb.CreateLockResponse:
        lock = convert.lock_from_pb(request.lock, validate=False)
        stored, revision = await self._service.create_lock(
            self._caller_of(context), lock, await_ack=request.await_ack
        )
        return lock_pb.CreateLockResponse(lock=convert.lock_to_pb(stored), revision=revision)

    @unary
    async def UpsertLock(
        self, request: lock_pb.UpsertLockRequest, context: Context
    ) -> lock_pb.UpsertLockResponse:
        lock = convert.lock_from_pb(request.lock, validate=False)
        stored, revision, created = await self._service.upsert_lock(self._caller_of(context), lock)
        return lock_pb.UpsertLockResponse(
            lock=convert.lock_to_pb(stored), revision=revision, created=created
        )

    @unary
    async def GetLock(
        self, request: lock_pb.GetLockRequest, context: Context
    ) -> lock_pb.GetLockResponse:
        lock = self._service.get_lock(self._caller_of(context), request.name)
        return lock_pb.GetLockResponse(lock=convert.lock_to_pb(lock))

    @unary
    async def ListLocks(
        self, request: lock_pb.ListLocksRequest, context: Context
    ) -> lock_pb.ListLocksResponse:
        locks, token = self._service.list_locks(
            self._caller_of(context),
            in_force_only=request.in_force_only,
            targets=[convert.target_from_pb(target) for target in request.targets],
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return lock_pb.ListLocksResponse(
            locks=[convert.lock_to_pb(lock) for lock in locks], next_page_token=token
        )

    @unary
    async def DeleteLock(
        self, request: lock_pb.DeleteLockRequest, context: Context
    ) -> lock_pb.DeleteLockResponse:
        revision = await self._service.delete_lock(self._caller_of(context), request.name)
        return lock_pb.DeleteLockResponse(revision=revision)

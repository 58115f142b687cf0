"""`AuthClient`: the typed async client of the auth server (lockctl, tools, benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.client.calls import (
    ChannelClient,
    DeadlineInterceptor,
    ServerUnreachableError,
    call,
    channel_target,
    transport_reason,
)
from lockd.client.identity_file import IdentityFile
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode
from lockd.domain.resources import ClusterAuthPreference, Role, User
from lockd.pki_openssh import SignedSSHCertificate
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import cluster_service_pb2_grpc as cluster_grpc
from lockd.v1 import identity_service_pb2 as identity_pb
from lockd.v1 import identity_service_pb2_grpc as identity_grpc
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import lock_service_pb2_grpc as lock_grpc
from lockd.v1 import token_service_pb2 as token_pb
from lockd.v1 import token_service_pb2_grpc as token_grpc
from lockd.wire import convert
from lockd.wire.status_table import error_for

PUT_MODE_TO_PB = {
    PutMode.CREATE: cluster_pb.PUT_MODE_CREATE,
    PutMode.UPDATE: cluster_pb.PUT_MODE_UPDATE,
    PutMode.UPSERT: cluster_pb.PUT_MODE_UPSERT,
}


@dataclass(frozen=True, slots=True)
class AgentInfo:
    server_id: str
    address: str
    state: str
    applied_revision: int
    lag: int
    last_ack: datetime | None
    connected: bool
    epoch: str = ""
    last_frame: datetime | None = None  # the last message the server received from it
    replica_id: str = ""  # the auth replica it is (or was last) connected to


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    replica_id: str
    address: str
    healthy: bool
    revision: int
    epoch: str
    agents: int
    heartbeat_time: datetime | None
    alive: bool


@dataclass(frozen=True, slots=True)
class SignedIdentity:
    certificate_pem: bytes
    ca_certificate_pem: bytes
    roles: tuple[str, ...]
    not_after: datetime | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A join token as `lockctl tokens ls` shows it (never the secret)."""

    id: str
    type: str
    expires: datetime | None
    created_by: str


def _token_info(message: token_pb.TokenInfo) -> TokenInfo:
    expires = convert.timestamp_from_pb(message, "expires")
    return TokenInfo(message.id, message.type, expires, message.created_by)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    cluster_name: str
    version: str
    ca_pin: str
    store_type: str
    store_healthy: bool
    epoch: str
    revision: int
    agents: tuple[AgentInfo, ...]
    replicas: tuple[ReplicaInfo, ...] = ()
    replica_id: str = ""  # the replica that answered
    # A held call (`status(hold=…)`) ran out with an agent still pending.
    hold_expired: bool = False


# How long `lockctl lock --wait` (and the bench's copy of its path) holds each status
# call waiting for acks (`AuthClient.status(hold=…)`): long enough that nothing is polled
# while the acks come in, short enough for the progress shown once a second.
WAIT_HOLD = 1.0


class AuthClient(ChannelClient):
    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self._locks = lock_grpc.LockServiceStub(channel)
        self._cluster = cluster_grpc.ClusterServiceStub(channel)
        self._identity = identity_grpc.IdentityServiceStub(channel)
        self._tokens = token_grpc.TokenServiceStub(channel)

    @classmethod
    def connect(
        cls,
        address: str,
        credentials: grpc.ChannelCredentials | None = None,
        *,
        timeout: float | None = None,
    ) -> AuthClient:
        """A client of the auth server at `address`; `timeout` (seconds) is the deadline
        of every unary call that sets none itself (lockctl's --timeout)."""
        target = channel_target(address)
        interceptors = [] if timeout is None else [DeadlineInterceptor(timeout)]
        channel = (
            grpc.aio.secure_channel(target, credentials, interceptors=interceptors)
            if credentials is not None
            else grpc.aio.insecure_channel(target, interceptors=interceptors)
        )
        return cls(channel)

    @classmethod
    def connect_with_identity(
        cls, address: str, identity: IdentityFile | str | Path, *, timeout: float | None = None
    ) -> AuthClient:
        """An mTLS client of the auth server at `host:port`, as the identity in the file
        (a path, read and parsed here: ValidationError if it is not an identity file)."""
        if not isinstance(identity, IdentityFile):
            identity = IdentityFile.load(identity)
        return cls.connect(address, identity.credentials(), timeout=timeout)

    async def ping(self, deadline: float = 5.0) -> bool:
        """Check that an auth server answers (gRPC health); True when it is SERVING.

        Raises ServerUnreachableError, with the transport's reason (e.g. `connect:
        Connection refused (111)`), when nothing answers within the gRPC `deadline`
        (seconds).
        """
        request = health_pb2.HealthCheckRequest(service="")
        try:
            response = await health_pb2_grpc.HealthStub(self.channel).Check(
                request, timeout=deadline
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ServerUnreachableError(transport_reason(error)) from None
            raise error_for(code, error.details() or "") from None
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    # -- locks ---------------------------------------------------------------------

    async def create_lock(self, lock: Lock, *, await_ack: bool = False) -> tuple[Lock, int]:
        """The stored lock and its revision; `await_ack`: the caller will wait for the
        agents to confirm it (the event goes out asking for their acks)."""
        request = lock_pb.CreateLockRequest(lock=convert.lock_to_pb(lock), await_ack=await_ack)
        response = await call(self._locks.CreateLock(request))
        return convert.lock_from_pb(response.lock), response.revision

    async def upsert_lock(self, lock: Lock) -> tuple[Lock, int, bool]:
        request = lock_pb.UpsertLockRequest(lock=convert.lock_to_pb(lock))
        response = await call(self._locks.UpsertLock(request))
        return convert.lock_from_pb(response.lock), response.revision, response.created

    async def get_lock(self, name: str) -> Lock:
        response = await call(self._locks.GetLock(lock_pb.GetLockRequest(name=name)))
        return convert.lock_from_pb(response.lock)

    async def list_locks(
        self,
        *,
        in_force_only: bool = False,
        targets: Sequence[LockTarget] = (),
        page_size: int = 0,
    ) -> list[Lock]:
        """Every matching lock, fetched page by page."""
        return [
            lock
            async for lock in self._pages(
                lambda token: self._list_page(in_force_only, targets, page_size, token)
            )
        ]

    async def _list_page(
        self, in_force_only: bool, targets: Sequence[LockTarget], page_size: int, token: str
    ) -> tuple[list[Lock], str]:
        request = lock_pb.ListLocksRequest(
            in_force_only=in_force_only,
            targets=[convert.target_to_pb(target) for target in targets],
            page_size=page_size,
            page_token=token,
        )
        response = await call(self._locks.ListLocks(request))
        return [convert.lock_from_pb(lock) for lock in response.locks], response.next_page_token

    @staticmethod
    async def _pages(
        fetch: Callable[[str], Awaitable[tuple[list[Lock], str]]],
    ) -> AsyncIterator[Lock]:
        token = ""
        while True:
            items, token = await fetch(token)
            for item in items:
                yield item
            if not token:
                return

    async def delete_lock(self, name: str) -> int:
        response = await call(self._locks.DeleteLock(lock_pb.DeleteLockRequest(name=name)))
        return response.revision

    # -- cluster resources -------------------------------------------------------------

    async def get_cluster_auth_preference(self) -> tuple[ClusterAuthPreference, LockingMode]:
        request = cluster_pb.GetClusterAuthPreferenceRequest()
        response = await call(self._cluster.GetClusterAuthPreference(request))
        effective = convert.MODE_FROM_PB.get(response.effective_locking_mode)
        cap = convert.cap_from_pb(response.cluster_auth_preference)
        return cap, effective or cap.locking_mode

    async def set_cluster_auth_preference(self, cap: ClusterAuthPreference) -> int:
        request = cluster_pb.SetClusterAuthPreferenceRequest(
            cluster_auth_preference=convert.cap_to_pb(cap)
        )
        return (await call(self._cluster.SetClusterAuthPreference(request))).revision

    async def get_role(self, name: str) -> Role:
        response = await call(self._cluster.GetRole(cluster_pb.GetRoleRequest(name=name)))
        return convert.role_from_pb(response.role)

    async def list_roles(self) -> list[Role]:
        response = await call(self._cluster.ListRoles(cluster_pb.ListRolesRequest()))
        return [convert.role_from_pb(role) for role in response.roles]

    async def put_role(self, role: Role, mode: PutMode) -> bool:
        request = cluster_pb.PutRoleRequest(
            role=convert.role_to_pb(role), mode=PUT_MODE_TO_PB[mode]
        )
        return (await call(self._cluster.PutRole(request))).created

    async def delete_role(self, name: str) -> None:
        await call(self._cluster.DeleteRole(cluster_pb.DeleteRoleRequest(name=name)))

    async def get_user(self, name: str) -> User:
        response = await call(self._cluster.GetUser(cluster_pb.GetUserRequest(name=name)))
        return convert.user_from_pb(response.user)

    async def list_users(self) -> list[User]:
        response = await call(self._cluster.ListUsers(cluster_pb.ListUsersRequest()))
        return [convert.user_from_pb(user) for user in response.users]

    async def put_user(self, user: User, mode: PutMode) -> bool:
        request = cluster_pb.PutUserRequest(
            user=convert.user_to_pb(user), mode=PUT_MODE_TO_PB[mode]
        )
        return (await call(self._cluster.PutUser(request))).created

    async def delete_user(self, name: str) -> None:
        await call(self._cluster.DeleteUser(cluster_pb.DeleteUserRequest(name=name)))

    async def sign_user_identity(self, user: str, ttl: timedelta, csr_pem: bytes) -> SignedIdentity:
        """A client certificate for `user` (with the user's current roles) for this CSR."""
        request = identity_pb.SignUserIdentityRequest(
            user=user, ttl=convert.duration_to_pb(ttl), csr_pem=csr_pem
        )
        response = await call(self._identity.SignUserIdentity(request))
        return SignedIdentity(
            certificate_pem=response.certificate_pem,
            ca_certificate_pem=response.ca_certificate_pem,
            roles=tuple(response.roles),
            not_after=convert.timestamp_from_pb(response, "not_after"),
        )

    async def sign_ssh_user_certificate(
        self,
        user: str,
        ttl: timedelta,
        public_key: bytes,
        principals: Sequence[str],
        mfa_device: str = "",
        device: str = "",
    ) -> SignedSSHCertificate:
        """An OpenSSH user certificate for `user` (current roles) for this public key."""
        request = identity_pb.SignSSHUserCertificateRequest(
            user=user,
            ttl=convert.duration_to_pb(ttl),
            public_key=public_key,
            principals=principals,
            mfa_device=mfa_device,
            device=device,
        )
        response = await call(self._identity.SignSSHUserCertificate(request))
        return SignedSSHCertificate(
            certificate=response.certificate,
            ca_public_key=response.ca_public_key,
            roles=tuple(response.roles),
            principals=tuple(principals),
            not_after=convert.timestamp_from_pb(response, "not_after"),
        )

    async def create_agent_token(self, ttl: timedelta) -> tuple[str, datetime | None]:
        """A one-time agent join token and when it expires."""
        request = identity_pb.CreateTokenRequest(
            type=identity_pb.TOKEN_TYPE_AGENT, ttl=convert.duration_to_pb(ttl)
        )
        response = await call(self._identity.CreateToken(request))
        return response.token, convert.timestamp_from_pb(response, "expires")

    async def list_tokens(self) -> list[TokenInfo]:
        """The join tokens that can still be used, by id (their SHA-256's start)."""
        response = await call(self._tokens.ListTokens(token_pb.ListTokensRequest()))
        return [_token_info(token) for token in response.tokens]

    async def delete_token(self, id_prefix: str) -> TokenInfo:
        """Revoke the one usable token whose id starts with `id_prefix`."""
        request = token_pb.DeleteTokenRequest(id_prefix=id_prefix)
        return _token_info((await call(self._tokens.DeleteToken(request))).token)

    async def status(self, await_revision: int = 0, hold: float = 0.0) -> ClusterStatus:
        """The cluster's status; `await_revision` asks the agents to ack that revision at
        once (somebody waits for it: lockctl lock --wait), and `hold` (seconds, with it)
        has the server answer once every connected agent has, or after `hold`."""
        request = cluster_pb.GetClusterStatusRequest(await_revision=await_revision)
        if hold:
            request.hold.CopyFrom(convert.duration_to_pb(timedelta(seconds=hold)))
        response = await call(self._cluster.GetClusterStatus(request))
        return ClusterStatus(
            cluster_name=response.cluster_name,
            version=response.version,
            ca_pin=response.ca_pin,
            store_type=response.store_type,
            store_healthy=response.store_healthy,
            epoch=response.epoch,
            revision=response.revision,
            agents=tuple(
                AgentInfo(
                    server_id=agent.server_id,
                    address=agent.address,
                    state=convert.AGENT_STATE_NAMES.get(agent.state, "unknown"),
                    applied_revision=agent.applied_revision,
                    lag=agent.lag,
                    last_ack=convert.timestamp_from_pb(agent, "last_ack"),
                    connected=agent.connected,
                    epoch=agent.epoch,
                    last_frame=convert.timestamp_from_pb(agent, "last_frame"),
                    replica_id=agent.replica_id,
                )
                for agent in response.agents
            ),
            replicas=tuple(
                ReplicaInfo(
                    replica_id=replica.replica_id,
                    address=replica.address,
                    healthy=replica.healthy,
                    revision=replica.revision,
                    epoch=replica.epoch,
                    agents=replica.agents,
                    heartbeat_time=convert.timestamp_from_pb(replica, "heartbeat_time"),
                    alive=replica.alive,
                )
                for replica in response.replicas
            ),
            replica_id=response.replica_id,
            hold_expired=response.hold_expired,
        )

"""Typed async clients: `AuthClient` for the auth server (lockctl, tools, benchmarks) and
`AgentClient` for sidecars talking to their node agent.

Every failed call raises the domain error of the status code (`lockd.api.errors`), so
callers handle `NotFoundError`, `AccessDeniedError` … instead of gRPC details.

    async with AuthClient.connect("unix:/var/lib/lockd/admin.sock") as auth:
        lock, revision = await auth.create_lock(Lock(name, LockTarget(user="foo")))

Off the auth host, over mTLS with an identity file from `lockctl auth sign`:

    async with AuthClient.connect_with_identity("auth.example.com:3025", "alice.pem") as auth:
        status = await auth.status()
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockd.api import convert
from lockd.api.errors import error_for
from lockd.api.tls import client_credentials
from lockd.domain.errors import AccessDeniedError, LockdError, UnavailableError, ValidationError
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode
from lockd.domain.resources import ClusterAuthPreference, Role, User
from lockd.v1 import agent_service_pb2 as agent_pb
from lockd.v1 import agent_service_pb2_grpc as agent_grpc
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import cluster_service_pb2_grpc as cluster_grpc
from lockd.v1 import identity_service_pb2 as identity_pb
from lockd.v1 import identity_service_pb2_grpc as identity_grpc
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import lock_service_pb2_grpc as lock_grpc

T = TypeVar("T")

PUT_MODE_TO_PB = {
    PutMode.CREATE: cluster_pb.PUT_MODE_CREATE,
    PutMode.UPDATE: cluster_pb.PUT_MODE_UPDATE,
    PutMode.UPSERT: cluster_pb.PUT_MODE_UPSERT,
}
AGENT_STATE_NAMES = {
    cluster_pb.AGENT_SYNC_STATE_UNSPECIFIED: "unknown",
    cluster_pb.AGENT_SYNC_STATE_SYNCING: "syncing",
    cluster_pb.AGENT_SYNC_STATE_SYNCED: "synced",
    cluster_pb.AGENT_SYNC_STATE_DEGRADED: "degraded",
    cluster_pb.AGENT_SYNC_STATE_STALE: "stale",
}


class ServerUnreachableError(UnavailableError):
    """Nothing answered at the address (no socket, connection refused, timed out).

    Raised by `AuthClient.ping`, so a caller can tell "no server there" apart from a
    server that answered UNAVAILABLE (e.g. its store is down).
    """


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


@dataclass(frozen=True, slots=True)
class SignedIdentity:
    certificate_pem: bytes
    ca_certificate_pem: bytes
    roles: tuple[str, ...]
    not_after: datetime | None


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


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
IDENTITY_FILE_LAYOUT = (
    "an identity file holds a PRIVATE KEY, then the user's CERTIFICATE, then the cluster "
    "CA's CERTIFICATE, as `lockctl auth sign` writes it"
)


@dataclass(frozen=True, slots=True)
class IdentityFile:
    """A client identity for mTLS in one file, like Teleport's identity file.

    PEM blocks in this order: the private key, the certificate the cluster CA issued for
    it, and the CA certificate(s) to trust the auth server with. `parse` checks the
    structure (every block present and readable, the certificate belongs to the key and
    was issued by a CA in the file), not whether the certificate is still valid.
    """

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    def render(self) -> bytes:
        return b"".join(_ending_newline(pem) for pem in (self.key_pem, self.cert_pem, self.ca_pem))

    def credentials(self) -> grpc.ChannelCredentials:
        return client_credentials(self.ca_pem, self.key_pem, self.cert_pem)

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def ca_certificates(self) -> list[bytes]:
        """Each CA certificate of the file, as PEM."""
        return [m.group(0) + b"\n" for m in _PEM_BLOCK.finditer(self.ca_pem)]

    @classmethod
    def load(cls, path: str | Path) -> IdentityFile:
        """Read and parse `path`; ValidationError naming the file and the problem."""
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            raise ValidationError(f"cannot read {path}: {error.strerror or error}") from None
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "identity file") -> IdentityFile:
        blocks = [(m.group(1).decode(), m.group(0) + b"\n") for m in _PEM_BLOCK.finditer(data)]
        if not blocks:
            raise ValidationError(
                f"{source}: not an identity file, no PEM blocks ({IDENTITY_FILE_LAYOUT})"
            )
        keys = [pem for label, pem in blocks if label.endswith("PRIVATE KEY")]
        certs = [pem for label, pem in blocks if label == "CERTIFICATE"]
        if len(keys) != 1:
            what = "no private key" if not keys else f"{len(keys)} private keys"
            raise ValidationError(f"{source}: {what} ({IDENTITY_FILE_LAYOUT})")
        if not certs:
            raise ValidationError(f"{source}: no certificate ({IDENTITY_FILE_LAYOUT})")
        if len(certs) < 2:
            raise ValidationError(f"{source}: no CA certificate ({IDENTITY_FILE_LAYOUT})")
        key = _load_key(keys[0], source)
        cert, *cas = (_load_certificate(pem, source) for pem in certs)
        if _spki(cert.public_key()) != _spki(key.public_key()):
            raise ValidationError(f"{source}: the certificate is not for the private key")
        if not any(_issued_by(cert, ca) for ca in cas):
            raise ValidationError(
                f"{source}: the certificate was not issued by the CA certificate in the file"
            )
        return cls(keys[0], certs[0], b"".join(certs[1:]))


def _ending_newline(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _load_key(pem: bytes, source: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ValidationError(f"{source}: the private key is encrypted") from None
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ValidationError(f"{source}: invalid private key ({error})") from None


def _load_certificate(pem: bytes, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as error:
        raise ValidationError(f"{source}: invalid certificate ({error})") from None


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


async def call(rpc: Awaitable[T]) -> T:
    """Await a gRPC call, raising the domain error for a failed status."""
    try:
        return await rpc
    except grpc.aio.AioRpcError as error:
        raise error_for(error.code(), error.details() or "") from None


def _transport_reason(error: grpc.aio.AioRpcError) -> str:
    """The useful tail of gRPC's connect failure text.

    `failed to connect to all addresses; last error: UNKNOWN: unix:/x.sock: connect:
    Connection refused (111)` becomes `connect: Connection refused (111)`.
    """
    details = error.details() or ""
    if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer in time"
    marker = "connect: "
    if marker in details:
        return marker + details.rsplit(marker, 1)[1]
    return details or "unavailable"


def channel_target(address: str) -> str:
    """`host:port`, `unix:/path` or a bare filesystem path (taken as a Unix socket)."""
    if address.startswith(("/", "./")):
        return f"unix:{address}"
    return address


class AuthClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._locks = lock_grpc.LockServiceStub(channel)
        self._cluster = cluster_grpc.ClusterServiceStub(channel)
        self._identity = identity_grpc.IdentityServiceStub(channel)

    @classmethod
    def connect(
        cls, address: str, credentials: grpc.ChannelCredentials | None = None
    ) -> AuthClient:
        target = channel_target(address)
        channel = (
            grpc.aio.secure_channel(target, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(target)
        )
        return cls(channel)

    @classmethod
    def connect_with_identity(cls, address: str, identity: IdentityFile | str | Path) -> AuthClient:
        """An mTLS client of the auth server at `host:port`, as the identity in the file
        (a path, read and parsed here: ValidationError if it is not an identity file)."""
        if not isinstance(identity, IdentityFile):
            identity = IdentityFile.load(identity)
        return cls.connect(address, identity.credentials())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

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
                raise ServerUnreachableError(_transport_reason(error)) from None
            raise error_for(code, error.details() or "") from None
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    # -- locks ---------------------------------------------------------------------

    async def create_lock(self, lock: Lock) -> tuple[Lock, int]:
        request = lock_pb.CreateLockRequest(lock=convert.lock_to_pb(lock))
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

    async def create_agent_token(self, ttl: timedelta) -> tuple[str, datetime | None]:
        """A one-time agent join token and when it expires."""
        request = identity_pb.CreateTokenRequest(
            type=identity_pb.TOKEN_TYPE_AGENT, ttl=convert.duration_to_pb(ttl)
        )
        response = await call(self._identity.CreateToken(request))
        return response.token, convert.timestamp_from_pb(response, "expires")

    async def status(self) -> ClusterStatus:
        response = await call(self._cluster.GetClusterStatus(cluster_pb.GetClusterStatusRequest()))
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
                    state=AGENT_STATE_NAMES.get(agent.state, "unknown"),
                    applied_revision=agent.applied_revision,
                    lag=agent.lag,
                    last_ack=convert.timestamp_from_pb(agent, "last_ack"),
                    connected=agent.connected,
                    epoch=agent.epoch,
                )
                for agent in response.agents
            ),
        )


# -- the node agent (for sidecars) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessDecision:
    allowed: bool
    reason: str
    lock_name: str
    mode: LockingMode


@dataclass(frozen=True, slots=True)
class SessionTermination:
    """Why the agent ended a session: the SPEC §3 text and the lock's name (if any)."""

    reason: str
    lock_name: str


@dataclass(frozen=True, slots=True)
class AgentStatus:
    server_id: str
    state: str
    epoch: str
    revision: int
    freshness_age: timedelta
    locks_in_force: int
    sessions: int
    cluster_locking_mode: LockingMode | None


class SessionDenied(AccessDeniedError):
    """The agent refused to register the session; the message is SPEC §3's."""

    def __init__(self, decision: AccessDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def _decision(message: agent_pb.Decision) -> AccessDecision:
    return AccessDecision(
        allowed=message.allowed,
        reason=message.reason,
        lock_name=message.lock_name,
        mode=convert.MODE_FROM_PB.get(message.mode) or LockingMode.BEST_EFFORT,
    )


class Session:
    """A live session registered with the agent; ends when the `async with` block exits.

    `await session.terminated()` returns once the agent signals termination; iterate
    (`async for termination in session`) or register `on_terminated(callback)` instead.
    """

    def __init__(self, call: Any, session_id: str, decision: AccessDecision) -> None:
        self._call = call
        self.session_id = session_id
        self.decision = decision
        self._signal: asyncio.Task[SessionTermination] = asyncio.create_task(self._wait())

    async def _wait(self) -> SessionTermination:
        try:
            response = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise error_for(error.code(), error.details() or "") from None
        if response is grpc.aio.EOF or response.WhichOneof("message") != "terminated":
            raise UnavailableError("the agent ended the session stream without a signal")
        return SessionTermination(response.terminated.reason, response.terminated.lock_name)

    async def terminated(self) -> SessionTermination:
        """Wait for the termination signal (raises UnavailableError if the agent goes)."""
        return await asyncio.shield(self._signal)

    def is_terminated(self) -> bool:
        return self._signal.done() and not self._signal.cancelled() and not self._signal.exception()

    def on_terminated(self, callback: Callable[[SessionTermination], None]) -> None:
        """Call `callback` with the termination when it arrives."""

        def deliver(task: asyncio.Task[SessionTermination]) -> None:
            if not task.cancelled() and task.exception() is None:
                callback(task.result())

        self._signal.add_done_callback(deliver)

    async def __aiter__(self) -> AsyncIterator[SessionTermination]:
        yield await self.terminated()

    async def close(self) -> None:
        """End the session on the agent (the sidecar's session is over)."""
        self._call.cancel()
        self._signal.cancel()
        with contextlib.suppress(asyncio.CancelledError, LockdError):
            await self._signal


class AgentClient:
    """Client of the node agent's Unix socket, for sidecars.

    async with AgentClient.connect("/var/lib/lockd/agent.sock") as agent:
        async with agent.open_session(Identity(user="alice", login="root")) as session:
            termination = await session.terminated()
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self._stub = agent_grpc.AgentServiceStub(channel)

    @classmethod
    def connect(cls, socket: str | Path) -> AgentClient:
        return cls(grpc.aio.insecure_channel(channel_target(str(socket))))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.channel.close()

    @contextlib.asynccontextmanager
    async def open_session(
        self, identity: Identity, session_id: str = ""
    ) -> AsyncIterator[Session]:
        """Register a session; raises SessionDenied when a lock (or strict mode) refuses it."""
        request = agent_pb.OpenSessionRequest(
            identity=convert.identity_to_pb(identity), session_id=session_id
        )
        call = self._stub.OpenSession(request)
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as error:
            raise error_for(error.code(), error.details() or "") from None
        if not isinstance(first, agent_pb.OpenSessionResponse) or not first.HasField("opened"):
            call.cancel()
            raise UnavailableError("the agent did not answer the session registration")
        decision = _decision(first.opened.decision)
        if not decision.allowed:
            call.cancel()
            raise SessionDenied(decision)
        session = Session(call, first.opened.session_id, decision)
        try:
            yield session
        finally:
            await session.close()

    async def check_access(self, identity: Identity) -> AccessDecision:
        request = agent_pb.CheckAccessRequest(identity=convert.identity_to_pb(identity))
        response = await call(self._stub.CheckAccess(request))
        return _decision(response.decision)

    async def status(self) -> AgentStatus:
        response = await call(self._stub.GetStatus(agent_pb.GetStatusRequest()))
        return AgentStatus(
            server_id=response.server_id,
            state=AGENT_STATE_NAMES.get(response.state, "unknown"),
            epoch=response.epoch,
            revision=response.revision,
            freshness_age=convert.duration_from_pb(response.freshness_age),
            locks_in_force=response.locks_in_force,
            sessions=response.sessions,
            cluster_locking_mode=convert.MODE_FROM_PB.get(response.cluster_locking_mode),
        )

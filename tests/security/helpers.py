"""Helpers of the security suite: a real auth server with mTLS and the identities to call it.

`SecureCluster` runs an `AuthApp` with TLS on loopback (mTLS on `port`, the join
port on `join_port`, the admin socket as the bootstrap path) and hands out identities the
way an operator would get them: users through SignUserIdentity on the admin socket (what
`lockctl auth sign` does), agents through a one-time token and the join port. Everything
it opens is closed when the cluster closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from prometheus_client import CollectorRegistry

from lockd.auth.watch_stream import WatchSettings
from lockd.client import AuthClient
from lockd.client.join import AgentIdentity, join
from lockd.client.tls_credentials import client_credentials
from lockd.domain.ports import PutMode, Store
from lockd.domain.resources import Role, Rule, User
from lockd.obs.audit import MemoryAuditSink
from lockd.obs.metrics import GrpcServerMetrics
from lockd.pki import ClusterCA, key_pem, make_csr, new_key
from lockd.runtime.auth_app import AuthApp, AuthServerSettings, TlsSettings
from lockd.testing import SteppedClock
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.v1.watch_service_pb2_grpc import WatchServiceStub
from tests.support import WAIT

T = TypeVar("T")

CLUSTER_NAME = "sec.lockd"
# Generous: the suite must pass on a loaded 2-core machine.
LOCK_VERBS = ("list", "create", "read", "update", "delete")
# The seed's locksmith role (Teleport's): every verb on locks.
LOCKSMITH = Role(name="locksmith", allow=(Rule(resources=("lock",), verbs=LOCK_VERBS),))
# May look at locks, not change them.
AUDITOR = Role(name="auditor", allow=(Rule(resources=("lock",), verbs=("list", "read")),))
DEV = Role(name="dev")
ROLES = (LOCKSMITH, AUDITOR, DEV)


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """What `lockctl auth sign` writes: a key, its certificate and the CA (PEM)."""

    name: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    def credentials(self) -> grpc.ChannelCredentials:
        return client_credentials(self.ca_pem, self.key_pem, self.cert_pem)


class SecureCluster:
    """One TLS auth server; `start()` again on the same directories is a restart."""

    def __init__(self, directory: Path, sockets: Path, store_factory: Callable[[], Store]):
        self.directory = directory
        self.ca_dir = directory / "ca"
        self.admin_socket = sockets / "admin.sock"
        self._store_factory = store_factory
        self.audit = MemoryAuditSink()
        # One registry for every start: a restart reuses the same metric objects.
        self.registry = CollectorRegistry()
        self.grpc_metrics = GrpcServerMetrics(self.registry)
        # The server's time, stepped forward by tests that are about expiry. It runs in
        # real time otherwise: heartbeats must flow, and TLS handshakes check
        # certificates against the real clock.
        self.clock = SteppedClock()
        self.app: AuthApp | None = None
        self._clients: list[AuthClient] = []
        self._channels: list[grpc.aio.Channel] = []

    async def start(self) -> AuthApp:
        settings = AuthServerSettings(
            cluster_name=CLUSTER_NAME,
            listen_addr="127.0.0.1:0",
            admin_socket=self.admin_socket,
            watch=WatchSettings(heartbeat_interval=timedelta(seconds=1)),
            shutdown_grace=1.0,
            tls=TlsSettings(ca_dir=self.ca_dir, join_listen_addr="127.0.0.1:0"),
        )
        self.app = await AuthApp.start(
            settings, self._store_factory(), self.clock, self.audit, grpc_metrics=self.grpc_metrics
        )
        return self.app

    async def stop(self) -> None:
        for client in self._clients:
            await client.close()
        for channel in self._channels:
            await channel.close()
        self._clients.clear()
        self._channels.clear()
        if self.app is not None:
            app, self.app = self.app, None
            await app.stop()

    # -- addresses and the CA ----------------------------------------------------------

    @property
    def running(self) -> AuthApp:
        assert self.app is not None, "the auth server is not running"
        return self.app

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    @property
    def join_address(self) -> str:
        return f"127.0.0.1:{self.running.join_port}"

    @property
    def ca(self) -> ClusterCA:
        ca = self.running.ca
        assert ca is not None, "the auth server runs without TLS"
        return ca

    # -- clients -----------------------------------------------------------------------

    def admin(self) -> AuthClient:
        """The local admin, over the admin socket (full rights, named "Admin")."""
        client = AuthClient.connect(f"unix:{self.admin_socket}")
        self._clients.append(client)
        return client

    def client(self, credentials: grpc.ChannelCredentials) -> AuthClient:
        """A client of the mTLS port with these credentials."""
        client = AuthClient.connect(self.address, credentials)
        self._clients.append(client)
        return client

    def channel(
        self, credentials: grpc.ChannelCredentials, address: str | None = None
    ) -> grpc.aio.Channel:
        """A raw channel to the mTLS port (or `address`) with these credentials."""
        channel = grpc.aio.secure_channel(address or self.address, credentials)
        self._channels.append(channel)
        return channel

    # -- identities the way an operator gets them --------------------------------------

    async def seed_roles(self) -> None:
        admin = self.admin()
        for role in ROLES:
            await admin.put_role(role, PutMode.UPSERT)

    async def user(
        self, name: str, roles: tuple[str, ...], ttl: timedelta = timedelta(hours=1)
    ) -> UserIdentity:
        """Create (or update) the user, then sign a certificate for it on the admin socket."""
        admin = self.admin()
        await admin.put_user(User(name=name, roles=roles), PutMode.UPSERT)
        key = new_key()
        signed = await admin.sign_user_identity(name, ttl, make_csr(key, name))
        return UserIdentity(name, key_pem(key), signed.certificate_pem, signed.ca_certificate_pem)

    async def agent(self, server_id: str) -> AgentIdentity:
        """Join as `server_id` with a fresh one-time token and the CA pin from status."""
        admin = self.admin()
        token, _ = await admin.create_agent_token(timedelta(minutes=5))
        pin = (await admin.status()).ca_pin
        return await join(self.join_address, token, server_id, pin)


def now() -> datetime:
    return datetime.now(UTC)


class RawWatch:
    """WatchLocks spoken by hand over a channel, as an agent written by someone else."""

    def __init__(self, channel: grpc.aio.Channel, agent_id: str) -> None:
        self.call: Any = WatchServiceStub(channel).WatchLocks()
        self.agent_id = agent_id

    async def hello(self) -> None:
        hello = watch_pb.WatchHello(agent_id=self.agent_id)
        await self.call.write(watch_pb.WatchLocksRequest(hello=hello))

    async def read(self, within: float = WAIT) -> Any:
        """The next response, or grpc.aio.EOF; raises AioRpcError when the call fails."""
        return await asyncio.wait_for(self.call.read(), within)

    async def read_until(self, kind: str, within: float = WAIT) -> Any:
        """Read past heartbeats and anything else until a response of `kind` arrives."""
        deadline = time.monotonic() + within
        while True:
            response = await self.read(max(deadline - time.monotonic(), 0.1))
            assert response is not grpc.aio.EOF, f"the stream ended before {kind}"
            if response.WhichOneof("message") == kind:
                return response

    def cancel(self) -> None:
        self.call.cancel()

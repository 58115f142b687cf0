"""Typed async clients: `AuthClient` for the auth server (lockctl, tools, benchmarks) and
`AgentClient` for sidecars talking to their node agent.

Every failed call raises the domain error of the status code (`lockd.wire.status_table`), so
callers handle `NotFoundError`, `AccessDeniedError` … instead of gRPC details.

    async with AuthClient.connect("unix:/var/lib/lockd/admin.sock") as auth:
        lock, revision = await auth.create_lock(Lock(name, LockTarget(user="foo")))

Off the auth host, over mTLS with an identity file from `lockctl auth sign`:

    async with AuthClient.connect_with_identity("auth.example.com:3025", "alice.pem") as auth:
        status = await auth.status()
"""

from lockd.client.agent_client import (
    AccessDecision,
    AgentClient,
    AgentStatus,
)
from lockd.client.auth_client import (
    AgentInfo,
    AuthClient,
    ClusterStatus,
    ReplicaInfo,
    SignedIdentity,
)
from lockd.client.calls import ServerUnreachableError, call, channel_target
from lockd.client.identity_file import IdentityFile
from lockd.client.session_handle import (
    Session,
    SessionDenied,
    SessionRequest,
    SessionTermination,
)
from lockd.client.sync_agent import SyncAgentClient, SyncSession
from lockd.domain.sessions import SessionMetadata, SessionProtocol

__all__ = [
    "AccessDecision",
    "AgentClient",
    "AgentInfo",
    "AgentStatus",
    "AuthClient",
    "ClusterStatus",
    "IdentityFile",
    "ReplicaInfo",
    "ServerUnreachableError",
    "Session",
    "SessionDenied",
    "SessionMetadata",
    "SessionProtocol",
    "SessionRequest",
    "SessionTermination",
    "SignedIdentity",
    "SyncAgentClient",
    "SyncSession",
    "call",
    "channel_target",
]

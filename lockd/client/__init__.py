"""Typed async clients: `AuthClient` for the auth server (lockctl, tools, benchmarks) and
`AgentClient` for sidecars talking to their node agent.

Every failed call raises the domain error of the status code (`lockd.wire.status_table`), so
callers handle `NotFoundError`, `AccessDeniedError` … instead of gRPC details.

    async with AuthClient.connect("unix:/var/lib/lockd/admin.sock") as auth:
        lock, revision = await auth.create_lock(Lock(name, LockTarget(user="foo")))

Off the auth host, over mTLS with an identity file from `lockctl auth sign`:

    async with AuthClient.connect_with_identity("auth.example.com:3025", "alice.pem") as auth:
        status = await auth.status()

The names load on first use (PEP 562): an agent, which needs only the watch client,
does not import the admin clients and their X.509 and SSH certificate code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each exported name → the module that defines it.
_EXPORTS = {
    "AccessDecision": "lockd.client.agent_client",
    "AgentClient": "lockd.client.agent_client",
    "AgentInfo": "lockd.client.auth_client",
    "AgentStatus": "lockd.client.agent_client",
    "AuthClient": "lockd.client.auth_client",
    "call": "lockd.client.calls",
    "channel_target": "lockd.client.calls",
    "ClusterStatus": "lockd.client.auth_client",
    "IdentityFile": "lockd.client.identity_file",
    "ReplicaInfo": "lockd.client.auth_client",
    "ServerUnreachableError": "lockd.client.calls",
    "Session": "lockd.client.session_handle",
    "SessionDenied": "lockd.client.session_handle",
    "SessionMetadata": "lockd.domain.sessions",
    "SessionProtocol": "lockd.domain.sessions",
    "SessionRequest": "lockd.client.session_handle",
    "SessionTermination": "lockd.client.session_handle",
    "SignedIdentity": "lockd.client.auth_client",
    "SyncAgentClient": "lockd.client.sync_agent",
    "SyncSession": "lockd.client.sync_agent",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

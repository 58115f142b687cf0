"""Audit events (SPEC §8): what happened to locks and to whom they were applied, and
every change a security reviewer asks about (issue 15: roles, users, the cluster auth
preference, identities, tokens, agents).

Events are values built by pure functions (`lock_created`, `session_terminated`, ...) and
written by a sink, one JSON object per line. Every line opens with the same four keys:

    {"time":"2021-08-14T12:27:00Z","event":"lock.created","code":"LK001I",
     "cluster":"lockd.local", ...event fields}

(Log lines, by contrast, open with `timestamp`, `level`, `logger`, `event`: the audit
trail keeps `time` and `code` on purpose, and both key sets are stable.) Every change
made through the API also names its actor and where the call came from: `by` (a user
name, `Admin` on the admin socket, an agent's server_id, `lockd` for the server itself)
and `source` (the gRPC peer, e.g. `ipv4:10.0.0.7:51234`, `unix:` for the admin socket,
`""` when the server acted on its own). The change events are listed in
docs/security.md ("Audit").

The `code` is stable (alerting rules and SIEM parsers may key on it); its last letter is
the severity: I info, W warning.

==================== ======== ======================================================
event                code     fields
==================== ======== ======================================================
lock.created         LK001I   name, target, expires (RFC3339 or null), message, by
lock.deleted         LK002I   name, by; target, expires, message when known
lock.expired         LK003I   name; target, expires, message when known
lock.updated         LK004I   as lock.created (an existing lock replaced with --force)
session.terminated   SS001W   session_id, user, server_id, reason, reason_kind, lock,
                              then the session fields (below) the sidecar gave
session.start        SS002I   session_id, user, server_id, the session fields, identity
session.rejected     SS003W   as session.start, plus reason, mode, lock
access.denied        AC001W   user, identity, reason, mode, lock
==================== ======== ======================================================

The session fields: login, protocol (ssh, db, app, desktop, k8s, tcp or ""),
remote_address, target_resource, started_at (RFC3339), channel (the agent's name for
the sidecar channel) and, on start and rejected, sidecar (the name the sidecar gave).

`target` is an object of the lock's non-empty target fields; `reason` is the exact
user-facing text (SPEC §3); `reason_kind` is `lock`, `strict_stale` or `server_lock`;
`lock` is the name of the lock responsible, "" when none (strict lock-out).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.sessions import NO_METADATA, SessionMetadata, SessionRecord
from lockd.domain.timeparse import format_rfc3339

LOCK_CREATED = "lock.created"
LOCK_DELETED = "lock.deleted"
LOCK_EXPIRED = "lock.expired"
LOCK_UPDATED = "lock.updated"
SESSION_TERMINATED = "session.terminated"
SESSION_START = "session.start"
SESSION_REJECTED = "session.rejected"
ACCESS_DENIED = "access.denied"
ROLE_CREATED = "role.created"
ROLE_UPDATED = "role.updated"
ROLE_DELETED = "role.deleted"
USER_CREATED = "user.created"
USER_UPDATED = "user.updated"
USER_DELETED = "user.deleted"
CAP_UPDATED = "cluster_auth_preference.updated"
IDENTITY_SIGNED = "identity.signed"
TOKEN_CREATED = "token.created"
TOKEN_USED = "token.used"
TOKEN_DELETED = "token.deleted"
AGENT_JOINED = "agent.joined"
AGENT_RENEWED = "agent.renewed"

EVENT_CODES: Mapping[str, str] = {
    LOCK_CREATED: "LK001I",
    LOCK_DELETED: "LK002I",
    LOCK_EXPIRED: "LK003I",
    LOCK_UPDATED: "LK004I",
    SESSION_TERMINATED: "SS001W",
    SESSION_START: "SS002I",
    SESSION_REJECTED: "SS003W",
    ACCESS_DENIED: "AC001W",
    ROLE_CREATED: "RL001I",
    ROLE_UPDATED: "RL002I",
    ROLE_DELETED: "RL003I",
    USER_CREATED: "US001I",
    USER_UPDATED: "US002I",
    USER_DELETED: "US003I",
    CAP_UPDATED: "CP001I",
    IDENTITY_SIGNED: "ID001I",
    TOKEN_CREATED: "TK001I",
    TOKEN_USED: "TK002I",
    TOKEN_DELETED: "TK003I",
    AGENT_JOINED: "AG001I",
    AGENT_RENEWED: "AG002I",
}
# How much of a token's SHA-256 the audit trail and `lockctl tokens ls` show.
TOKEN_ID_LENGTH = 16

TERMINATION_KINDS = ("lock", "strict_stale", "server_lock")
_ENVELOPE_KEYS = ("time", "event", "code", "cluster")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record: the envelope plus event-specific, JSON-ready fields."""

    event: str
    code: str
    time: datetime
    cluster: str
    fields: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The JSON object: time, event, code, cluster, then the fields in order."""
        clash = set(self.fields) & set(_ENVELOPE_KEYS)
        if clash:
            raise ValueError(f"audit fields may not override {sorted(clash)}")
        return {
            "time": format_rfc3339(self.time),
            "event": self.event,
            "code": self.code,
            "cluster": self.cluster,
            **self.fields,
        }

    def to_json(self) -> str:
        """One line of JSON, without the newline (newlines in values are escaped)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))


def _event(name: str, cluster: str, time: datetime, fields: Mapping[str, object]) -> AuditEvent:
    return AuditEvent(
        event=name, code=EVENT_CODES[name], time=time, cluster=cluster, fields=dict(fields)
    )


def _expires(lock: Lock) -> str | None:
    return format_rfc3339(lock.expires) if lock.expires is not None else None


def _lock_fields(lock: Lock) -> dict[str, object]:
    return {
        "name": lock.name,
        "target": lock.target.as_dict(),
        "expires": _expires(lock),
        "message": lock.message,
    }


def lock_created(lock: Lock, by: str, cluster: str, time: datetime, source: str = "") -> AuditEvent:
    """A new lock was stored by `by` (a user name, or "Admin" on the admin socket)."""
    return _event(LOCK_CREATED, cluster, time, {**_lock_fields(lock), **_actor(by, source)})


def lock_updated(lock: Lock, by: str, cluster: str, time: datetime, source: str = "") -> AuditEvent:
    """An existing lock was replaced (`create --force`)."""
    return _event(LOCK_UPDATED, cluster, time, {**_lock_fields(lock), **_actor(by, source)})


def lock_deleted(
    lock: Lock | str, by: str, cluster: str, time: datetime, source: str = ""
) -> AuditEvent:
    """A lock was removed by `by`; pass the Lock when known, else its name."""
    fields = _lock_fields(lock) if isinstance(lock, Lock) else {"name": lock}
    return _event(LOCK_DELETED, cluster, time, {**fields, **_actor(by, source)})


def _actor(by: str, source: str) -> dict[str, object]:
    return {"by": by, "source": source}


def change(
    name: str, fields: Mapping[str, object], by: str, source: str, cluster: str, time: datetime
) -> AuditEvent:
    """A security-relevant change (role.*, user.*, cluster_auth_preference.updated,
    identity.signed, token.*, agent.*): its fields, then `by` and `source`."""
    return _event(name, cluster, time, {**fields, **_actor(by, source)})


def token_id(digest: str) -> str:
    """The public name of a join token: the start of its SHA-256 (never the secret)."""
    return digest[:TOKEN_ID_LENGTH]


def lock_expired(lock: Lock | str, cluster: str, time: datetime) -> AuditEvent:
    """The auth server expired a lock whose `expires` passed."""
    fields = _lock_fields(lock) if isinstance(lock, Lock) else {"name": lock}
    return _event(LOCK_EXPIRED, cluster, time, fields)


def session_terminated(
    session_id: str,
    user: str,
    server_id: str,
    reason: str,
    cluster: str,
    time: datetime,
    *,
    reason_kind: str = "lock",
    lock: str = "",
    login: str = "",
    metadata: SessionMetadata = NO_METADATA,
    channel: str = "",
) -> AuditEvent:
    """An agent ended a live session; `reason` is the text the user saw."""
    if reason_kind not in TERMINATION_KINDS:
        raise ValueError(f"unknown termination kind {reason_kind!r}")
    return _event(
        SESSION_TERMINATED,
        cluster,
        time,
        {
            "session_id": session_id,
            "user": user,
            "server_id": server_id,
            "reason": reason,
            "reason_kind": reason_kind,
            "lock": lock,
            **_session_fields(login, metadata, channel),
        },
    )


def _session_fields(login: str, metadata: SessionMetadata, channel: str) -> dict[str, object]:
    started = metadata.started_at
    return {
        "login": login,
        "protocol": metadata.protocol.value,
        "remote_address": metadata.remote_address,
        "target_resource": metadata.target_resource,
        "started_at": None if started is None else format_rfc3339(started),
        "channel": channel,
    }


def _registration_fields(record: SessionRecord, sidecar: str) -> dict[str, object]:
    identity = record.identity
    return {
        "session_id": record.session_id,
        "user": identity.user,
        "server_id": identity.server_id,
        **_session_fields(identity.login, record.metadata, record.owner),
        "sidecar": sidecar,
        "identity": identity_fields(identity),
    }


def session_start(record: SessionRecord, sidecar: str, cluster: str, time: datetime) -> AuditEvent:
    """A sidecar registered a session and the agent allowed it."""
    return _event(SESSION_START, cluster, time, _registration_fields(record, sidecar))


def session_rejected(
    record: SessionRecord,
    sidecar: str,
    reason: str,
    mode: LockingMode | str,
    lock: str,
    cluster: str,
    time: datetime,
) -> AuditEvent:
    """A sidecar registered a session and the agent refused it (a lock, or lock-out)."""
    fields = _registration_fields(record, sidecar)
    fields.update(reason=reason, mode=str(mode), lock=lock)
    return _event(SESSION_REJECTED, cluster, time, fields)


def access_denied(
    identity: Identity,
    reason: str,
    mode: LockingMode | str,
    cluster: str,
    time: datetime,
    *,
    lock: str = "",
    by: str = "",
    source: str = "",
) -> AuditEvent:
    """A request or a new session was refused because of a lock (or strict lock-out).

    `identity` is who the lock hit; `by` and `source` the caller when it asked on behalf
    of someone else (a certificate for a locked user) or over the API.
    """
    return _event(
        ACCESS_DENIED,
        cluster,
        time,
        {
            "user": identity.user,
            "identity": identity_fields(identity),
            "reason": reason,
            "mode": str(mode),
            "lock": lock,
            **_actor(by, source),
        },
    )


def identity_fields(identity: Identity) -> dict[str, object]:
    """The identity's non-empty attributes; roles and access_requests as lists."""
    fields: dict[str, object] = {}
    for name in (
        "user",
        "roles",
        "login",
        "mfa_device",
        "device",
        "access_requests",
        "windows_desktop",
        "bot_instance_id",
        "join_token",
        "server_id",
    ):
        value = getattr(identity, name)
        if value:
            fields[name] = list(value) if isinstance(value, tuple) else value
    return fields


def target_fields(target: LockTarget) -> dict[str, str]:
    """A lock target as it appears in audit events."""
    return target.as_dict()


# --------------------------------------------------------------------------- sinks


class AuditSink(Protocol):
    """Where audit events go. `emit` is synchronous and quick (a line to a file)."""

    def emit(self, event: AuditEvent) -> None: ...

    def close(self) -> None: ...


class MemoryAuditSink:
    """A sink that keeps events in `events` (for tests)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.closed = False

    def emit(self, event: AuditEvent) -> None:
        if self.closed:
            raise ValueError("emit on a closed audit sink")
        self.events.append(event)

    def close(self) -> None:
        self.closed = True

    def of(self, event: str) -> list[AuditEvent]:
        """The events named `event` (e.g. "lock.created"), in emission order."""
        return [item for item in self.events if item.event == event]

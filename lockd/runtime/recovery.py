"""Offline recovery on the auth host, for when no API call can help.

Locks apply to the local admin socket too (SPEC §6), so a lock on `Admin` (or on a role
every admin holds) refuses every call until it expires — including the `rm` that would
lift it. `lockd recover delete-lock NAME --config FILE` removes such a lock straight from
the store while the auth server is stopped: it commits an ordinary DELETE event (agents
apply it when they reconnect, like any other) and writes `lock.deleted` with
`by: "lockd recover"` to the audit log. It needs what editing the database would need
anyway: access to the auth server's data directory.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lockd.config import Config
from lockd.domain.errors import PreconditionError, ValidationError
from lockd.domain.resources import Kind
from lockd.obs.audit import AuditSink, lock_deleted
from lockd.runtime.unix_socket import answers
from lockd.store import build_store

RECOVERY_ACTOR = "lockd recover"


async def delete_lock_offline(config: Config, name: str, audit: AuditSink) -> int:
    """Delete lock `name` from the stopped auth server's store; return its revision."""
    auth = config.auth_service
    if auth.storage.type == "memory":
        raise ValidationError("the memory store keeps nothing on disk: restart the auth server")
    if answers(auth.admin_socket):
        raise PreconditionError(
            f"the auth server is running (its admin socket {auth.admin_socket} answers); "
            "stop it first, or remove the lock with lockctl as a locksmith"
        )
    if not auth.storage.path.exists():
        raise ValidationError(f"there is no store at {auth.storage.path}")
    store = build_store(auth.storage.type, auth.storage.path)
    await store.open()
    try:
        event = await store.delete(Kind.LOCK, name, datetime.now(UTC))
    finally:
        await store.close()
    audit.emit(lock_deleted(name, RECOVERY_ACTOR, config.cluster_name, event.time))
    return event.revision

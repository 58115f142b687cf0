"""Offline recovery on the auth host, for when no API call can help.

Locks apply to the local admin socket too (SPEC §6), so a lock on `Admin` (or on a role
every admin holds) refuses every call until it expires — including the `rm` that would
lift it. `lockd recover delete-lock NAME --config FILE` removes such a lock straight from
the store: it commits an ordinary DELETE event (agents apply it like any other) and
writes `lock.deleted` with `by: "lockd recover"` to the audit log. It needs what editing
the database would need anyway: access to the auth server's data directory (SQLite) or
to the database (PostgreSQL).

SQLite has one writer, so the auth server must be stopped first; its agents get the
DELETE when they reconnect to it. PostgreSQL is shared by replicas that all write: the
DELETE is the next revision of the shared log, and replicas that run apply it at once
(each tails the log) and send it to their agents. Only the replica on this data dir must
be stopped (the data dir's lock, `lockd.runtime.process_lock`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from lockd.config import Config
from lockd.domain.errors import PreconditionError, ValidationError
from lockd.domain.ports import Store
from lockd.domain.resources import Kind
from lockd.obs.audit import AuditSink, lock_deleted
from lockd.runtime.unix_socket import answers
from lockd.store import build_store

RECOVERY_ACTOR = "lockd recover"


async def delete_lock_offline(config: Config, name: str, audit: AuditSink) -> int:
    """Delete lock `name` from the auth server's store; return its revision."""
    store = _store_to_repair(config)
    await store.open()
    try:
        event = await store.delete(Kind.LOCK, name, datetime.now(UTC))
    finally:
        await store.close()
    audit.emit(lock_deleted(name, RECOVERY_ACTOR, config.cluster_name, event.time))
    return event.revision


def _store_to_repair(config: Config) -> Store:
    """The configured store, unopened; refused when there is none to repair or when the
    auth server that writes it alone is running."""
    storage = config.auth_service.storage
    if storage.type == "memory":
        raise ValidationError("the memory store keeps nothing on disk: restart the auth server")
    if storage.type == "postgres":
        return build_store(storage.type, storage.path, storage.postgres)
    admin_socket = config.auth_service.admin_socket
    if answers(admin_socket):
        raise PreconditionError(
            f"the auth server is running (its admin socket {admin_socket} answers); "
            "stop it first, or remove the lock with lockctl as a locksmith"
        )
    if not storage.path.exists():
        raise ValidationError(f"there is no store at {storage.path}")
    return build_store(storage.type, storage.path)

"""lockd.obs.audit: event builders, the JSON-lines sink (file and stream) and the fake."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.obs.audit import (
    EVENT_CODES,
    AuditEvent,
    AuditSink,
    MemoryAuditSink,
    access_denied,
    lock_created,
    lock_deleted,
    lock_expired,
    lock_updated,
    session_terminated,
)
from lockd.obs.audit_writer import JsonLinesAuditSink, open_audit_sink

T0 = datetime(2021, 8, 14, 12, 27, tzinfo=UTC)
EXPIRES = datetime(2021, 8, 14, 22, 27, tzinfo=UTC)
LOCK = Lock(
    "dc7cee9d",
    LockTarget(user="foo@example.com", role="dev"),
    message="Suspicious activity.",
    expires=EXPIRES,
)


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_lock_created_has_the_documented_fields() -> None:
    """lock.created carries the envelope then name, target, expires, message and by."""
    event = lock_created(LOCK, "alice", "lockd.local", T0)

    assert event.to_dict() == {
        "time": "2021-08-14T12:27:00Z",
        "event": "lock.created",
        "code": "LK001I",
        "cluster": "lockd.local",
        "name": "dc7cee9d",
        "target": {"user": "foo@example.com", "role": "dev"},
        "expires": "2021-08-14T22:27:00Z",
        "message": "Suspicious activity.",
        "by": "alice",
        "source": "",
    }


def test_lock_without_expiry_has_null_expires() -> None:
    """A lock that never expires is logged with "expires": null (a stable schema)."""
    event = lock_created(Lock("l", LockTarget(user="u")), "Admin", "c", T0)

    assert event.to_dict()["expires"] is None
    assert event.to_dict()["message"] == ""


def test_lock_deleted_and_expired_accept_a_lock_or_a_name() -> None:
    """With only a name the event names the lock; with the Lock it also gives its target."""
    assert lock_deleted("l1", "bob", "c", T0).to_dict() == {
        "time": "2021-08-14T12:27:00Z",
        "event": "lock.deleted",
        "code": "LK002I",
        "cluster": "c",
        "name": "l1",
        "by": "bob",
        "source": "",
    }
    expired = lock_expired(LOCK, "c", EXPIRES).to_dict()
    assert (expired["event"], expired["code"]) == ("lock.expired", "LK003I")
    assert expired["target"] == {"user": "foo@example.com", "role": "dev"}
    assert lock_expired("l1", "c", T0).to_dict()["name"] == "l1"
    assert lock_deleted(LOCK, "bob", "c", T0).to_dict()["target"] == {
        "user": "foo@example.com",
        "role": "dev",
    }
    assert lock_updated(LOCK, "bob", "c", T0).code == "LK004I"


def test_session_terminated_has_the_documented_fields() -> None:
    """session.terminated: session id, user, server id, the exact reason text and the lock."""
    reason = 'lock targeting User:"foo" is in force: Suspicious activity.'
    event = session_terminated("s-1", "foo", "node-1", reason, "c", T0, lock="l1")

    assert event.to_dict() == {
        "time": "2021-08-14T12:27:00Z",
        "event": "session.terminated",
        "code": "SS001W",
        "cluster": "c",
        "session_id": "s-1",
        "user": "foo",
        "server_id": "node-1",
        "reason": reason,
        "reason_kind": "lock",
        "lock": "l1",
        "login": "",
        "protocol": "",
        "remote_address": "",
        "target_resource": "",
        "started_at": None,
        "channel": "",
    }
    with pytest.raises(ValueError, match="unknown termination kind"):
        session_terminated("s", "u", "n", "r", "c", T0, reason_kind="the message text")


def test_access_denied_has_identity_reason_and_mode() -> None:
    """access.denied names the user, lists the non-empty identity fields, reason and mode."""
    identity = Identity(user="foo", roles=("dev", "ops"), login="root", server_id="node-1")
    reason = "preventive lock-out due to local lock view becoming unreliable"

    event = access_denied(identity, reason, LockingMode.STRICT, "c", T0)

    assert event.to_dict() == {
        "time": "2021-08-14T12:27:00Z",
        "event": "access.denied",
        "code": "AC001W",
        "cluster": "c",
        "user": "foo",
        "identity": {
            "user": "foo",
            "roles": ["dev", "ops"],
            "login": "root",
            "server_id": "node-1",
        },
        "reason": reason,
        "mode": "strict",
        "lock": "",
        "by": "",
        "source": "",
    }


def test_codes_are_unique_and_stable() -> None:
    """The code table is the documented one; each event has its own code."""
    assert dict(EVENT_CODES) == {
        "lock.created": "LK001I",
        "lock.deleted": "LK002I",
        "lock.expired": "LK003I",
        "lock.updated": "LK004I",
        "session.terminated": "SS001W",
        "session.start": "SS002I",
        "session.rejected": "SS003W",
        "access.denied": "AC001W",
        "role.created": "RL001I",
        "role.updated": "RL002I",
        "role.deleted": "RL003I",
        "user.created": "US001I",
        "user.updated": "US002I",
        "user.deleted": "US003I",
        "cluster_auth_preference.updated": "CP001I",
        "identity.signed": "ID001I",
        "token.created": "TK001I",
        "token.used": "TK002I",
        "token.deleted": "TK003I",
        "agent.joined": "AG001I",
        "agent.renewed": "AG002I",
    }
    assert len(set(EVENT_CODES.values())) == len(EVENT_CODES)


def test_fields_may_not_override_the_envelope() -> None:
    """An event field named like an envelope key is a bug and is refused."""
    event = AuditEvent("lock.created", "LK001I", T0, "c", {"time": "later"})

    with pytest.raises(ValueError, match="may not override"):
        event.to_dict()


def test_file_sink_writes_one_json_object_per_line(tmp_path: Path) -> None:
    """Each emit appends one parseable line; newlines in values stay escaped."""
    path = tmp_path / "audit.log"
    sink = JsonLinesAuditSink(path)
    tricky = Lock("l2", LockTarget(user="u"), message="line one\nline two")

    sink.emit(lock_created(LOCK, "alice", "c", T0))
    sink.emit(lock_created(tricky, "alice", "c", T0))
    sink.close()

    records = read_lines(path)
    assert [r["name"] for r in records] == ["dc7cee9d", "l2"]
    assert records[1]["message"] == "line one\nline two"


def test_file_sink_creates_the_file_with_mode_0600(tmp_path: Path) -> None:
    """The audit file (and a missing parent directory) is private to the owner."""
    path = tmp_path / "logs" / "audit.log"

    sink = JsonLinesAuditSink(path)
    sink.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_file_sink_appends_across_reopen(tmp_path: Path) -> None:
    """A restart appends to the existing audit log instead of truncating it."""
    path = tmp_path / "audit.log"
    first = JsonLinesAuditSink(path)
    first.emit(lock_created(LOCK, "alice", "c", T0))
    first.close()

    second = JsonLinesAuditSink(path)
    second.emit(lock_deleted(LOCK.name, "bob", "c", T0))
    second.close()

    assert [r["event"] for r in read_lines(path)] == ["lock.created", "lock.deleted"]


def test_lines_are_visible_before_close(tmp_path: Path) -> None:
    """The writer flushes each batch: a tailing reader sees a line once it is drained,
    while the sink is still open."""
    path = tmp_path / "audit.log"
    sink = JsonLinesAuditSink(path)

    sink.emit(lock_expired("l1", "c", T0))
    sink.drain()

    assert read_lines(path)[0]["event"] == "lock.expired"
    sink.close()


async def test_emit_on_the_event_loop_does_no_file_io(tmp_path: Path) -> None:
    """emit only queues the line (the blocking-call guard would fail a write on the
    loop); a thousand lines arrive in order."""
    path = tmp_path / "audit.log"
    sink = await asyncio.to_thread(JsonLinesAuditSink, path)  # opening the file may block

    for index in range(1000):
        sink.emit(lock_expired(f"l{index}", "c", T0))
    await asyncio.to_thread(sink.close)

    assert [r["name"] for r in read_lines(path)] == [f"l{index}" for index in range(1000)]


def test_an_event_json_cannot_hold_is_logged_and_the_lines_around_it_are_written(
    tmp_path: Path,
) -> None:
    """Events are encoded on the writer thread: one that cannot be encoded (a bug) is
    logged as an error naming the event, and the writer goes on with the next lines."""
    path = tmp_path / "audit.log"
    sink = JsonLinesAuditSink(path)
    broken = AuditEvent("lock.created", "LK001I", T0, "c", {"target": object()})

    with structlog.testing.capture_logs() as logs:
        sink.emit(lock_expired("before", "c", T0))
        sink.emit(broken)
        sink.emit(lock_expired("after", "c", T0))
        sink.close()

    assert [r["name"] for r in read_lines(path)] == ["before", "after"]
    assert [(log["event"], log["audit_event"]) for log in logs] == [
        ("could not encode an audit event", "lock.created")
    ]


def test_stream_sink_writes_but_does_not_close_the_stream() -> None:
    """With a stream (stdout) the sink writes lines and leaves the stream open on close."""
    stream = io.StringIO()
    sink = JsonLinesAuditSink(stream)

    sink.emit(lock_created(LOCK, "alice", "c", T0))
    sink.close()

    assert not stream.closed
    assert json.loads(stream.getvalue())["code"] == "LK001I"


def test_open_audit_sink_maps_stdout_and_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "stdout" writes to standard output; a path opens a file sink."""
    sink = open_audit_sink("stdout")
    sink.emit(lock_expired("l1", "c", T0))
    sink.close()
    assert json.loads(capsys.readouterr().out)["name"] == "l1"

    file_sink = open_audit_sink(tmp_path / "a.log")
    assert file_sink.path == tmp_path / "a.log"
    file_sink.close()


def test_memory_sink_keeps_events_in_order() -> None:
    """The in-memory fake records emitted events and satisfies the AuditSink protocol."""
    memory = MemoryAuditSink()
    sink: AuditSink = memory

    sink.emit(lock_created(LOCK, "alice", "c", T0))
    sink.emit(lock_deleted(LOCK.name, "alice", "c", T0))
    sink.close()

    assert [e.event for e in memory.events] == ["lock.created", "lock.deleted"]
    assert [e.code for e in memory.of("lock.deleted")] == ["LK002I"]
    with pytest.raises(ValueError, match="closed"):
        memory.emit(lock_expired("l1", "c", T0))

"""LockService over real gRPC: validation, conflicts, listing, stamping, audit."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from lockd.domain.lock import EMPTY_TARGET_MESSAGE, MAX_MESSAGE_BYTES, MAX_NAME_LENGTH
from lockd.v1 import lock_service_pb2 as lock_pb
from lockd.v1 import resources_pb2 as res_pb
from lockd.v1.lock_service_pb2_grpc import LockServiceStub
from tests.api.conftest import Running, Servers
from tests.api.helpers import cluster_status, create_lock, lock_pb_of, now
from tests.support import eventually


async def _code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value.code(), raised.value.details() or ""


async def _names(stub: LockServiceStub, **request: object) -> list[str]:
    response = await stub.ListLocks(lock_pb.ListLocksRequest(**request))  # type: ignore[arg-type,misc]
    return [lock.name for lock in response.locks]


def _invalid_locks() -> list[tuple[str, res_pb.Lock, str]]:
    past = now() - timedelta(minutes=1)
    too_long = res_pb.Lock(
        name="long", target=res_pb.LockTarget(user="a"), message="m" * (MAX_MESSAGE_BYTES + 1)
    )
    return [
        ("empty target", res_pb.Lock(name="x", message="why"), EMPTY_TARGET_MESSAGE),
        ("absent lock", res_pb.Lock(), "lock name must not be empty"),
        ("empty name", res_pb.Lock(target=res_pb.LockTarget(user="a")), "must not be empty"),
        ("too-long message", too_long, f"longer than {MAX_MESSAGE_BYTES} bytes"),
        ("slash in name", lock_pb_of("a/b"), "may not contain"),
        ("space in name", lock_pb_of("a b"), "may not contain"),
        ("too-long name", lock_pb_of("n" * (MAX_NAME_LENGTH + 1)), "longer than"),
        ("control character in target", lock_pb_of("c", user="bo\x01b"), "control characters"),
        ("expires in the past", lock_pb_of("p", expires=past), "not in the future"),
    ]


@pytest.mark.parametrize(
    ("case", "lock", "message"),
    _invalid_locks(),
    ids=[case for case, _, _ in _invalid_locks()],
)
async def test_an_invalid_lock_is_refused_and_nothing_is_stored(
    server: Running, case: str, lock: res_pb.Lock, message: str
) -> None:
    """CreateLock and UpsertLock refuse it with INVALID_ARGUMENT and a clear message; the
    revision does not move and no lock appears."""
    channel = server.channel()
    stub = LockServiceStub(channel)
    before = (await cluster_status(channel)).revision
    for call in (
        stub.CreateLock(lock_pb.CreateLockRequest(lock=lock)),
        stub.UpsertLock(lock_pb.UpsertLockRequest(lock=lock)),
    ):
        code, details = await _code_of(call)
        assert code is grpc.StatusCode.INVALID_ARGUMENT, case
        assert message in details
    assert (await cluster_status(channel)).revision == before
    assert await _names(stub) == []
    assert server.audit.events == []


async def test_creating_an_existing_name_is_refused_and_keeps_the_first_lock(
    server: Running,
) -> None:
    """CreateLock of a taken name: ALREADY_EXISTS, the stored lock and revision unchanged."""
    channel = server.channel()
    stub = LockServiceStub(channel)
    revision = await create_lock(channel, lock_pb_of("taken", user="alice", message="first"))
    code, details = await _code_of(
        stub.CreateLock(lock_pb.CreateLockRequest(lock=lock_pb_of("taken", user="mallory")))
    )
    assert code is grpc.StatusCode.ALREADY_EXISTS
    assert details == 'lock "taken" already exists'
    stored = (await stub.GetLock(lock_pb.GetLockRequest(name="taken"))).lock
    assert (stored.target.user, stored.message) == ("alice", "first")
    assert (await cluster_status(channel)).revision == revision


async def test_upsert_replaces_an_existing_lock_with_the_next_revision(server: Running) -> None:
    """UpsertLock creates, then replaces (created=False) with revision + 1; the audit
    trail has lock.created then lock.updated."""
    stub = LockServiceStub(server.channel())
    first = await stub.UpsertLock(lock_pb.UpsertLockRequest(lock=lock_pb_of("u", message="1")))
    second = await stub.UpsertLock(lock_pb.UpsertLockRequest(lock=lock_pb_of("u", message="2")))
    assert (first.created, second.created) == (True, False)
    assert second.revision == first.revision + 1
    assert (await stub.GetLock(lock_pb.GetLockRequest(name="u"))).lock.message == "2"
    assert [event.event for event in server.audit.events] == ["lock.created", "lock.updated"]


async def test_deleting_or_getting_a_missing_lock_is_not_found(server: Running) -> None:
    """DeleteLock and GetLock of an unknown name: NOT_FOUND, and the revision stays."""
    channel = server.channel()
    stub = LockServiceStub(channel)
    code, details = await _code_of(stub.DeleteLock(lock_pb.DeleteLockRequest(name="ghost")))
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, 'lock "ghost" not found')
    code, _ = await _code_of(stub.GetLock(lock_pb.GetLockRequest(name="ghost")))
    assert code is grpc.StatusCode.NOT_FOUND
    assert (await cluster_status(channel)).revision == 0


async def test_delete_commits_the_next_revision_and_is_audited(server: Running) -> None:
    """DeleteLock returns the next revision, the lock is gone, lock.deleted is written."""
    channel = server.channel()
    stub = LockServiceStub(channel)
    revision = await create_lock(channel, lock_pb_of("d", message="bye"))
    deleted = await stub.DeleteLock(lock_pb.DeleteLockRequest(name="d"))
    assert deleted.revision == revision + 1
    assert await _names(stub) == []
    record = server.audit.of("lock.deleted")[0]
    assert (record.fields["name"], record.fields["by"], record.fields["message"]) == (
        "d",
        "Admin",
        "bye",
    )


async def test_list_filters_by_targets(server: Running) -> None:
    """`targets` keeps the locks any single-field query target matches (a union), and a
    multi-field query needs every field to match."""
    channel = server.channel()
    stub = LockServiceStub(channel)
    await create_lock(channel, lock_pb_of("alice-only", user="alice"))
    await create_lock(channel, lock_pb_of("alice-on-x", user="alice", server_id="x"))
    await create_lock(channel, lock_pb_of("dev-role", role="dev"))
    await create_lock(channel, lock_pb_of("bob", user="bob"))

    def target(**fields: str) -> res_pb.LockTarget:
        return res_pb.LockTarget(**fields)

    assert await _names(stub) == ["alice-on-x", "alice-only", "bob", "dev-role"]
    assert await _names(stub, targets=[target(user="alice")]) == ["alice-on-x", "alice-only"]
    assert await _names(stub, targets=[target(server_id="x")]) == ["alice-on-x"]
    assert await _names(stub, targets=[target(user="bob"), target(role="dev")]) == [
        "bob",
        "dev-role",
    ]
    assert await _names(stub, targets=[target(user="alice", server_id="x")]) == ["alice-on-x"]
    assert await _names(stub, targets=[target(user="carol")]) == []
    assert await _names(stub, targets=[target(user="Alice")]) == []  # exact, case-sensitive


async def test_list_in_force_only_leaves_out_locks_past_their_expiry(servers: Servers) -> None:
    """A lock past `expires` that the reaper has not removed yet is listed, but not with
    in_force_only."""
    server = await servers.start(controlled=True, fake_clock=True)
    channel = server.channel()
    stub = LockServiceStub(channel)
    server.store.hold_expiry = True  # type: ignore[attr-defined]
    expires = servers.clock.now() + timedelta(seconds=1)
    await create_lock(channel, lock_pb_of("forever"))
    await create_lock(channel, lock_pb_of("brief", expires=expires))
    await create_lock(channel, lock_pb_of("later", expires=now() + timedelta(hours=1)))
    assert await _names(stub, in_force_only=True) == ["brief", "forever", "later"]

    servers.clock.advance(1.05)
    assert await _names(stub) == ["brief", "forever", "later"]
    assert await _names(stub, in_force_only=True) == ["forever", "later"]
    assert await _names(stub, in_force_only=True, targets=[res_pb.LockTarget(user="alice")]) == [
        "forever",
        "later",
    ]

    server.store.hold_expiry = False  # type: ignore[attr-defined]

    async def reaped() -> bool:
        return await _names(stub) == ["forever", "later"]

    await eventually(reaped, what="the reaper to remove the expired lock")


async def test_list_pages_through_locks_by_name(server: Running) -> None:
    """page_size bounds a page; next_page_token continues after the last name and is empty
    on the last page; a negative page_size is refused."""
    channel = server.channel()
    stub = LockServiceStub(channel)
    for name in ["e", "c", "a", "d", "b"]:
        await create_lock(channel, lock_pb_of(name))
    pages, token = [], ""
    while True:
        response = await stub.ListLocks(lock_pb.ListLocksRequest(page_size=2, page_token=token))
        pages.append([lock.name for lock in response.locks])
        token = response.next_page_token
        if not token:
            break
    assert pages == [["a", "b"], ["c", "d"], ["e"]]

    exact = await stub.ListLocks(lock_pb.ListLocksRequest(page_size=5))
    assert (len(exact.locks), exact.next_page_token) == (5, "")
    filtered = await stub.ListLocks(
        lock_pb.ListLocksRequest(page_size=1, targets=[res_pb.LockTarget(user="alice")])
    )
    assert ([lock.name for lock in filtered.locks], filtered.next_page_token) == (["a"], "a")

    code, _ = await _code_of(stub.ListLocks(lock_pb.ListLocksRequest(page_size=-1)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_the_server_stamps_created_at_and_created_by(servers: Servers) -> None:
    """created_at is the server's time of the call and created_by the caller — "Admin" on
    the admin socket — whatever the request said; the audit record names the same."""
    server = await servers.start(admin_socket=True)
    stub = LockServiceStub(server.admin_channel())
    sent = lock_pb_of("stamped", message="why")
    sent.created_by = "mallory"
    sent.created_at.FromDatetime(now() - timedelta(days=3))
    before = now()
    response = await stub.CreateLock(lock_pb.CreateLockRequest(lock=sent))
    after = now()
    for lock in (response.lock, (await stub.GetLock(lock_pb.GetLockRequest(name="stamped"))).lock):
        assert lock.created_by == "Admin"
        stamped = lock.created_at.ToDatetime().timestamp()
        assert before.timestamp() - 0.001 <= stamped <= after.timestamp() + 0.001
    record = server.audit.of("lock.created")[0]
    assert (record.fields["name"], record.fields["by"], record.fields["message"]) == (
        "stamped",
        "Admin",
        "why",
    )
    assert record.fields["target"] == {"user": "alice"}


async def test_the_admin_socket_is_private_to_its_owner(servers: Servers) -> None:
    """The admin socket is created with mode 0600 and removed on stop."""
    server = await servers.start(admin_socket=True)
    socket = server.app.settings.admin_socket
    assert socket is not None
    assert socket.stat().st_mode & 0o777 == 0o600
    await server.close_channels()
    await server.stop()
    assert not socket.exists()

"""Contract: puts, deletes, revisions and users, on every store adapter."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from lockd.domain.errors import AlreadyExistsError, InvariantError, NotFoundError
from lockd.domain.events import EventType
from lockd.domain.modes import LockingMode
from lockd.domain.ports import PutMode, Store
from lockd.domain.resources import CLUSTER_AUTH_PREFERENCE_NAME, ClusterAuthPreference, Kind, User
from tests.contract.helpers import T0, all_events, at, cap, lock, replayed, role, snapshot_state


async def test_fresh_store_has_an_epoch_and_revision_zero(store: Store) -> None:
    """A new store starts a history: a random epoch, revision 0, nothing stored."""
    snapshot = await store.snapshot()
    assert re.fullmatch(r"[0-9a-f]{32}", snapshot.epoch)
    assert snapshot.revision == 0
    assert snapshot.resources == ()
    assert await store.events_since(0, 10) == []
    assert store.healthy


async def test_create_refuses_an_existing_name(store: Store) -> None:
    """CREATE of a name that exists raises AlreadyExistsError naming it, and commits nothing."""
    await store.put(lock("a"), PutMode.CREATE, T0)
    with pytest.raises(AlreadyExistsError, match=r'^lock "a" already exists$'):
        await store.put(lock("a", message="again"), PutMode.CREATE, at(1))
    snapshot = await store.snapshot()
    assert snapshot.revision == 1
    assert snapshot.resources == (lock("a"),)


async def test_update_refuses_a_missing_name(store: Store) -> None:
    """UPDATE of a name that does not exist raises NotFoundError and commits nothing."""
    with pytest.raises(NotFoundError, match=r'^lock "a" not found$'):
        await store.put(lock("a"), PutMode.UPDATE, T0)
    assert (await store.snapshot()).revision == 0


async def test_update_replaces_an_existing_resource(store: Store) -> None:
    """UPDATE replaces the stored resource and reports it was not created."""
    await store.put(lock("a"), PutMode.CREATE, T0)
    committed = await store.put(lock("a", message="new"), PutMode.UPDATE, at(1))
    assert not committed.created
    assert committed.event.revision == 2
    assert committed.event.resource == lock("a", message="new")
    assert (await store.snapshot()).resources == (lock("a", message="new"),)


async def test_upsert_creates_then_replaces(store: Store) -> None:
    """UPSERT creates a missing name (created=True) and replaces an existing one."""
    first = await store.put(lock("a"), PutMode.UPSERT, T0)
    second = await store.put(lock("a", message="m"), PutMode.UPSERT, at(1))
    assert (first.created, second.created) == (True, False)
    assert (await store.snapshot()).resources == (lock("a", message="m"),)


async def test_put_modes_apply_to_roles_too(store: Store) -> None:
    """Roles follow the same CREATE/UPDATE rules, with `role` in the messages."""
    with pytest.raises(NotFoundError, match=r'^role "dev" not found$'):
        await store.put(role("dev"), PutMode.UPDATE, T0)
    assert (await store.put(role("dev"), PutMode.CREATE, T0)).created
    with pytest.raises(AlreadyExistsError, match=r'^role "dev" already exists$'):
        await store.put(role("dev"), PutMode.CREATE, T0)
    updated = await store.put(role("dev", LockingMode.STRICT), PutMode.UPDATE, T0)
    assert not updated.created
    assert (await store.snapshot()).resources == (role("dev", LockingMode.STRICT),)


@pytest.mark.parametrize("mode", list(PutMode))
async def test_cluster_auth_preference_put_is_always_an_upsert(store: Store, mode: PutMode) -> None:
    """The preference is a singleton: any mode sets it; only the first put creates it."""
    first = await store.put(cap(LockingMode.STRICT), mode, T0)
    second = await store.put(cap(LockingMode.BEST_EFFORT), mode, at(1))
    assert (first.created, second.created) == (True, False)
    assert first.event.kind is Kind.CLUSTER_AUTH_PREFERENCE
    assert first.event.name == CLUSTER_AUTH_PREFERENCE_NAME
    assert (await store.snapshot()).resources == (cap(LockingMode.BEST_EFFORT),)


async def test_revisions_are_gapless_across_kinds(store: Store) -> None:
    """Every change of any replicated kind takes the next revision, in commit order."""
    revisions = [
        (await store.put(lock("a", expires=at(5)), PutMode.CREATE, T0)).event.revision,
        (await store.put(role("dev"), PutMode.CREATE, T0)).event.revision,
        (await store.put(cap(), PutMode.UPSERT, T0)).event.revision,
        (await store.put(lock("b"), PutMode.UPSERT, T0)).event.revision,
        (await store.delete(Kind.ROLE, "dev", at(1))).revision,
        *[event.revision for event in await store.expire_due(at(5))],
        (
            await store.delete(Kind.CLUSTER_AUTH_PREFERENCE, CLUSTER_AUTH_PREFERENCE_NAME, at(6))
        ).revision,
    ]
    assert revisions == [1, 2, 3, 4, 5, 6, 7]
    assert [event.revision for event in await all_events(store)] == revisions
    assert (await store.snapshot()).revision == 7


async def test_committed_events_are_the_logged_events(store: Store) -> None:
    """What put/delete return is exactly what the log replays, time included."""
    returned = [
        (await store.put(lock("a"), PutMode.CREATE, T0)).event,
        (await store.put(role("r"), PutMode.CREATE, at(1))).event,
        await store.delete(Kind.LOCK, "a", at(2)),
    ]
    assert await all_events(store) == returned
    assert [event.type for event in returned] == [EventType.PUT, EventType.PUT, EventType.DELETE]
    assert [event.time for event in returned] == [T0, at(1), at(2)]


async def test_refused_writes_consume_no_revision(store: Store) -> None:
    """A refused put or delete leaves no gap: the next commit gets the next revision."""
    await store.put(lock("a"), PutMode.CREATE, T0)
    with pytest.raises(AlreadyExistsError):
        await store.put(lock("a"), PutMode.CREATE, T0)
    with pytest.raises(NotFoundError):
        await store.delete(Kind.LOCK, "missing", T0)
    assert (await store.put(lock("b"), PutMode.CREATE, T0)).event.revision == 2


async def test_delete_commits_an_event_and_removes_the_resource(store: Store) -> None:
    """delete removes the resource and logs a DELETE carrying only the kind and name."""
    await store.put(lock("a"), PutMode.CREATE, T0)
    await store.put(lock("b"), PutMode.CREATE, T0)
    event = await store.delete(Kind.LOCK, "a", at(1))
    assert (event.revision, event.type, event.kind, event.name) == (
        3,
        EventType.DELETE,
        Kind.LOCK,
        "a",
    )
    assert event.resource is None
    assert event.time == at(1)
    assert (await store.snapshot()).resources == (lock("b"),)


@pytest.mark.parametrize("kind", [Kind.LOCK, Kind.ROLE])
async def test_delete_of_a_missing_resource_raises_not_found(store: Store, kind: Kind) -> None:
    """Deleting what is not there raises NotFoundError naming kind and name."""
    with pytest.raises(NotFoundError, match=rf'^{kind.value} "ghost" not found$'):
        await store.delete(kind, "ghost", T0)


async def test_deleting_the_preference_resets_it_to_the_default(store: Store) -> None:
    """Deleting the preference logs a DELETE; replaying it yields the default preference."""
    with pytest.raises(NotFoundError):
        await store.delete(Kind.CLUSTER_AUTH_PREFERENCE, CLUSTER_AUTH_PREFERENCE_NAME, T0)
    await store.put(cap(LockingMode.STRICT), PutMode.UPSERT, T0)
    event = await store.delete(Kind.CLUSTER_AUTH_PREFERENCE, CLUSTER_AUTH_PREFERENCE_NAME, at(1))
    assert event.type is EventType.DELETE
    assert (await store.snapshot()).resources == ()
    assert (await replayed(store)).cluster_auth_preference == ClusterAuthPreference()
    assert (await snapshot_state(store)).cluster_auth_preference == ClusterAuthPreference()
    assert (await store.put(cap(), PutMode.CREATE, at(2))).created


@pytest.mark.parametrize("kind", [Kind.USER, Kind.TOKEN])
async def test_delete_refuses_kinds_that_are_not_replicated(store: Store, kind: Kind) -> None:
    """delete() is for replicated kinds only; anything else is a caller bug."""
    with pytest.raises(ValueError, match="not a replicated kind"):
        await store.delete(kind, "x", T0)


async def test_naive_times_are_refused(store: Store) -> None:
    """A naive `now` is a bug (it would be read as local time), refused before any change."""
    naive = datetime(2024, 5, 1, 12, 0, 0)
    with pytest.raises(InvariantError):
        await store.put(lock("a"), PutMode.CREATE, naive)
    with pytest.raises(InvariantError):
        await store.expire_due(naive)
    assert (await store.snapshot()).revision == 0


async def test_users_are_stored_without_events_or_revisions(store: Store) -> None:
    """Users are kept but never replicated: no event, no revision, not in snapshots."""
    assert await store.put_user(User("bob", ("dev",)), PutMode.CREATE)
    assert not await store.put_user(User("bob", ("dev", "ops")), PutMode.UPDATE)
    await store.delete_user("bob")
    assert await store.put_user(User("carol"), PutMode.UPSERT)
    snapshot = await store.snapshot()
    assert (snapshot.revision, snapshot.resources) == (0, ())
    assert await store.events_since(0, 10) == []


async def test_users_can_be_read_back_and_listed_by_name(store: Store) -> None:
    """get_user returns the stored user (None when missing); list_users sorts by name."""
    await store.put_user(User("zed", ("a",)), PutMode.CREATE)
    await store.put_user(User("amy", ("b", "c")), PutMode.CREATE)
    assert await store.get_user("zed") == User("zed", ("a",))
    assert await store.get_user("nobody") is None
    assert await store.list_users() == [User("amy", ("b", "c")), User("zed", ("a",))]


async def test_user_put_modes_and_delete_errors(store: Store) -> None:
    """Users follow the CREATE/UPDATE rules; deleting a missing user raises NotFoundError."""
    with pytest.raises(NotFoundError, match=r'^user "bob" not found$'):
        await store.put_user(User("bob"), PutMode.UPDATE)
    await store.put_user(User("bob"), PutMode.CREATE)
    with pytest.raises(AlreadyExistsError, match=r'^user "bob" already exists$'):
        await store.put_user(User("bob"), PutMode.CREATE)
    await store.delete_user("bob")
    with pytest.raises(NotFoundError, match=r'^user "bob" not found$'):
        await store.delete_user("bob")

"""LockIndex and IdentityIndex answer exactly what a scan of everything would (SPEC §2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import PreconditionError
from lockd.domain.identity import Identity
from lockd.domain.index import LockIndex, PairIndex
from lockd.domain.lock import TARGET_FIELDS, Lock, LockTarget, TargetPair
from lockd.domain.sessions import SessionMetadata, SessionProtocol, SessionRecord, SessionRegistry
from tests.unit.strategies import T0

# Small alphabets so that names, values and expiry times collide often.
LOCK_NAMES = ("l1", "l2", "l3", "l4")
VALUES = ("a", "b")
MINUTES = range(-2, 3)
TIMES = [T0 + timedelta(minutes=m) for m in MINUTES]

small = st.sampled_from(("", *VALUES))
identities = st.builds(
    Identity,
    user=small,
    roles=st.lists(small, max_size=2).map(tuple),
    login=small,
    mfa_device=small,
    device=small,
    access_requests=st.lists(small, max_size=2).map(tuple),
    windows_desktop=small,
    bot_instance_id=small,
    join_token=small,
    server_id=small,
)
targets = st.dictionaries(
    st.sampled_from(TARGET_FIELDS), st.sampled_from(VALUES), min_size=1, max_size=3
).map(lambda fields: LockTarget(**fields))
lock_values = st.builds(
    Lock,
    name=st.sampled_from(LOCK_NAMES),
    target=targets,
    expires=st.none() | st.sampled_from(TIMES),
)
times = st.sampled_from(TIMES) | st.sampled_from(TIMES).map(lambda t: t - timedelta(microseconds=1))


@dataclass(frozen=True)
class Put:
    lock: Lock


@dataclass(frozen=True)
class Remove:
    name: str


# Puts twice as likely as removes, so that the index is seldom empty.
operations = st.lists(
    st.one_of(lock_values.map(Put), lock_values.map(Put), st.sampled_from(LOCK_NAMES).map(Remove)),
    max_size=12,
)


def brute_force_hits(
    locks: dict[str, Lock], query_targets: tuple[TargetPair, ...], now: datetime
) -> list[Lock]:
    """The definition of SPEC §2: any query target matches any in-force lock."""
    return sorted(
        (
            lock
            for lock in locks.values()
            if lock.in_force(now)
            and any(LockTarget(**{f: v}).matches(lock.target) for f, v in query_targets)
        ),
        key=lambda lock: lock.name,
    )


def replay(ops: list[Put | Remove]) -> tuple[LockIndex, dict[str, Lock]]:
    index = LockIndex()
    model: dict[str, Lock] = {}
    for op in ops:
        if isinstance(op, Put):
            index.put(op.lock)
            model[op.lock.name] = op.lock
        else:
            assert index.remove(op.name) == model.pop(op.name, None)
    return index, model


@given(operations, st.lists(identities, min_size=1, max_size=4), times)
def test_first_hit_and_hits_agree_with_a_brute_force_scan(
    ops: list[Put | Remove], people: list[Identity], now: datetime
) -> None:
    """After any put/replace/remove sequence, lookups equal a scan over all locks."""
    index, model = replay(ops)
    for identity in people:
        query = identity.query_targets()
        expected = brute_force_hits(model, query, now)
        assert index.hits(query, now) == expected
        first = index.first_hit(query, now)
        if expected:
            assert first in expected
        else:
            assert first is None


@given(operations, times)
def test_index_contents_follow_the_operations(ops: list[Put | Remove], now: datetime) -> None:
    """len, get, iteration and in_force reflect exactly the surviving locks."""
    index, model = replay(ops)
    assert len(index) == len(model)
    assert sorted(index, key=lambda lock: lock.name) == sorted(
        model.values(), key=lambda lock: lock.name
    )
    for name in LOCK_NAMES:
        assert index.get(name) == model.get(name)
    assert sorted(lock.name for lock in index.in_force(now)) == sorted(
        lock.name for lock in model.values() if lock.in_force(now)
    )


@given(st.lists(lock_values, max_size=6))
def test_index_built_from_locks_equals_index_built_by_puts(locks: list[Lock]) -> None:
    """LockIndex(locks) files the same locks as putting them one by one."""
    built = LockIndex(locks)
    _, model = replay([Put(lock) for lock in locks])
    assert {lock.name: lock for lock in built} == model


def lock(name: str, expires: datetime | None = None, **target: str) -> Lock:
    return Lock(name=name, target=LockTarget(**target), expires=expires)


def test_lock_on_a_server_hits_every_identity_served_there() -> None:
    """A server_id lock hits anyone whose interaction that agent serves."""
    index = LockIndex([lock("n", server_id="node-1")])
    alice = Identity(user="alice").on_server("node-1")
    bob_elsewhere = Identity(user="bob").on_server("node-2")
    assert index.first_hit(alice.query_targets(), T0) == index.get("n")
    assert index.first_hit(bob_elsewhere.query_targets(), T0) is None


def test_lock_with_several_fields_acts_as_a_union() -> None:
    """{user: alice, server_id: X} locks alice everywhere and everyone on X."""
    index = LockIndex([lock("u", user="alice", server_id="X")])
    assert index.hits(Identity(user="alice").on_server("Y").query_targets(), T0)
    assert index.hits(Identity(user="bob").on_server("X").query_targets(), T0)
    assert not index.hits(Identity(user="bob").on_server("Y").query_targets(), T0)


def test_lock_on_a_role_hits_an_identity_holding_it_among_others() -> None:
    """One role among several suffices."""
    index = LockIndex([lock("r", role="dev")])
    assert index.hits(Identity(user="carol", roles=("ops", "dev")).query_targets(), T0)


def test_expired_lock_does_not_hit_at_exactly_expires() -> None:
    """A lock stops hitting at its expires instant."""
    index = LockIndex([lock("e", expires=T0, user="alice")])
    query = Identity(user="alice").query_targets()
    assert index.first_hit(query, T0 - timedelta(microseconds=1)) is not None
    assert index.first_hit(query, T0) is None
    assert index.hits(query, T0) == []


def test_first_hit_skips_an_expired_lock_to_find_one_in_force() -> None:
    """An expired lock in the same bucket does not hide one in force."""
    index = LockIndex(
        [lock("a-old", expires=T0 - timedelta(hours=1), user="alice"), lock("b", user="alice")]
    )
    assert index.first_hit(Identity(user="alice").query_targets(), T0) == index.get("b")


def test_replacing_a_lock_refiles_it_under_its_new_target() -> None:
    """After an update the old target no longer hits, the new one does."""
    index = LockIndex([lock("x", user="alice")])
    index.put(lock("x", user="bob"))
    assert len(index) == 1
    assert index.hits(Identity(user="alice").query_targets(), T0) == []
    assert [found.name for found in index.hits(Identity(user="bob").query_targets(), T0)] == ["x"]


def test_removed_lock_no_longer_hits_and_remove_returns_it() -> None:
    """remove returns the lock once, then None."""
    index = LockIndex([lock("x", user="alice")])
    removed = index.remove("x")
    assert removed == lock("x", user="alice")
    assert index.remove("x") is None
    assert index.first_hit(Identity(user="alice").query_targets(), T0) is None


def test_hits_are_sorted_by_name_and_listed_once() -> None:
    """A lock matched through several query targets appears once; names sorted."""
    index = LockIndex([lock("z", user="alice", role="dev"), lock("a", role="dev")])
    found = index.hits(Identity(user="alice", roles=("dev",)).query_targets(), T0)
    assert [f.name for f in found] == ["a", "z"]


def test_empty_query_hits_nothing() -> None:
    """No query targets, no hit."""
    index = LockIndex([lock("x", user="alice")])
    assert index.first_hit((), T0) is None
    assert index.hits((), T0) == []


def test_query_on_a_field_with_the_same_value_but_another_field_does_not_hit() -> None:
    """{login: alice} does not hit a lock on {user: alice}: fields are compared too."""
    index = LockIndex([lock("x", user="alice")])
    assert index.first_hit((("login", "alice"),), T0) is None


# --- PairIndex and SessionRegistry -----------------------------------------------------


def test_pair_index_drops_empty_buckets_on_remove() -> None:
    """After its last entry leaves, a pair's bucket is empty (no leaked keys)."""
    index: PairIndex[str, int] = PairIndex()
    index.put("k", [("user", "a"), ("user", "a")], 1)
    assert index.bucket(("user", "a")) == {"k": 1}
    assert index.remove("k") == 1
    assert index.bucket(("user", "a")) == {}
    assert "k" not in index
    assert len(index) == 0


session_keys = st.sampled_from(("s1", "s2", "s3", "s4"))
identity_operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), session_keys, identities),
        st.tuples(st.just("discard"), session_keys, st.none()),
    ),
    max_size=12,
)


@given(identity_operations, st.lists(targets, min_size=1, max_size=4))
def test_session_registry_hit_by_equals_brute_force_over_registered_identities(
    ops: list[tuple[str, str, Identity | None]], lock_targets: list[LockTarget]
) -> None:
    """hit_by(pairs) is exactly the registered sessions a lock with those pairs hits."""
    registry = SessionRegistry()
    model: dict[str, Identity] = {}
    for action, key, identity in ops:
        registry.remove(("c1", key))
        model.pop(key, None)
        if action == "add":
            assert identity is not None
            registry.add(SessionRecord("c1", key, identity, SessionMetadata()))
            model[key] = identity
    assert len(registry) == len(model)
    assert all(("c1", key) in registry for key in model)
    for target in lock_targets:
        expected = {
            key
            for key, identity in model.items()
            if any(LockTarget(**{f: v}).matches(target) for f, v in identity.query_targets())
        }
        assert {record.session_id for record in registry.hit_by(target.pairs())} == expected


def test_session_registry_finds_sessions_on_a_locked_server_and_drops_a_channel() -> None:
    """A server_id lock finds every session on that agent; ending a channel removes all
    of its sessions and only those; ids are unique per channel, not across channels."""
    registry = SessionRegistry()
    ssh = SessionMetadata(SessionProtocol.SSH)
    registry.add(SessionRecord("c1", "s1", Identity(user="alice").on_server("node-1"), ssh))
    registry.add(SessionRecord("c2", "s1", Identity(user="bob").on_server("node-1"), ssh))
    registry.add(SessionRecord("c2", "s2", Identity(user="bob").on_server("node-2"), ssh))
    hit = registry.hit_by(LockTarget(server_id="node-1").pairs())
    assert [record.key for record in hit] == [("c1", "s1"), ("c2", "s1")]
    with pytest.raises(PreconditionError, match='session "s1" is already registered'):
        registry.add(SessionRecord("c1", "s1", Identity(user="carol"), ssh))
    assert registry.by_protocol()[SessionProtocol.SSH] == 3
    assert [record.key for record in registry.remove_owner("c2")] == [("c2", "s1"), ("c2", "s2")]
    assert len(registry) == 1
    assert registry.owned_by("c2") == 0
    assert registry.by_protocol()[SessionProtocol.SSH] == 1

"""Replication events and ReplicatedState.apply (DESIGN §3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import InvariantError
from lockd.domain.events import (
    REPLICATED_KINDS,
    Event,
    EventType,
    ReplicatedState,
    apply_change,
)
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ClusterAuthPreference, Kind, Role, User
from lockd.domain.unix_micros import to_micros
from tests.unit.strategies import T0

LOCK = Lock(name="l1", target=LockTarget(user="alice"), message="m")
ROLE = Role(name="dev", lock_mode=LockingMode.STRICT)
STRICT_CAP = ClusterAuthPreference(locking_mode=LockingMode.STRICT)


def put(revision: int, resource: Lock | Role | ClusterAuthPreference) -> Event:
    return Event.put(revision, resource, T0)


def removal(
    revision: int, kind: Kind, name: str, event_type: EventType = EventType.DELETE
) -> Event:
    return Event.removal(revision, event_type, kind, name, T0)


def test_replicated_kinds_are_lock_role_and_cluster_auth_preference() -> None:
    """Users and tokens are not replicated to agents."""
    assert set(REPLICATED_KINDS) == {Kind.LOCK, Kind.ROLE, Kind.CLUSTER_AUTH_PREFERENCE}


def test_put_event_carries_kind_name_and_resource() -> None:
    """Event.put derives kind and name from the resource."""
    event = put(7, LOCK)
    assert (event.revision, event.type, event.kind, event.name) == (
        7,
        EventType.PUT,
        Kind.LOCK,
        "l1",
    )
    assert event.resource is LOCK
    assert put(1, STRICT_CAP).name == "cluster-auth-preference"
    assert put(1, STRICT_CAP).kind is Kind.CLUSTER_AUTH_PREFERENCE


def test_removal_event_carries_only_the_name() -> None:
    """DELETE and EXPIRE events have no resource."""
    event = removal(3, Kind.LOCK, "l1", EventType.EXPIRE)
    assert (event.type, event.kind, event.name, event.resource) == (
        EventType.EXPIRE,
        Kind.LOCK,
        "l1",
        None,
    )


def test_fresh_state_is_empty_at_revision_zero_with_the_default_preference() -> None:
    """Before any event: no locks or roles, best_effort, revision 0."""
    state = ReplicatedState()
    assert (state.revision, state.locks, state.roles) == (0, {}, {})
    assert state.cluster_auth_preference == ClusterAuthPreference()
    assert state.resources() == [ClusterAuthPreference()]


def test_applying_a_put_adds_the_lock_and_advances_the_revision() -> None:
    """PUT lock at revision + 1 stores it and moves to that revision."""
    state = ReplicatedState()
    state.apply(put(1, LOCK))
    assert state.locks == {"l1": LOCK}
    assert state.revision == 1


def test_applying_a_put_for_an_existing_name_replaces_it() -> None:
    """A second PUT of the same name is an update."""
    state = ReplicatedState()
    state.apply(put(1, LOCK))
    updated = Lock(name="l1", target=LockTarget(role="dev"))
    state.apply(put(2, updated))
    assert state.locks == {"l1": updated}
    assert state.revision == 2


@pytest.mark.parametrize("event_type", [EventType.DELETE, EventType.EXPIRE])
def test_delete_and_expire_remove_the_lock(event_type: EventType) -> None:
    """Both DELETE and EXPIRE take the lock out of the state."""
    state = ReplicatedState()
    state.apply(put(1, LOCK))
    state.apply(put(2, Lock(name="l2", target=LockTarget(user="bob"))))
    state.apply(removal(3, Kind.LOCK, "l1", event_type))
    assert set(state.locks) == {"l2"}
    assert state.revision == 3


def test_removal_of_an_unknown_lock_still_advances_the_revision() -> None:
    """A removal of a name the state lacks changes nothing but the revision."""
    state = ReplicatedState()
    state.apply(removal(1, Kind.LOCK, "ghost"))
    assert state.locks == {}
    assert state.revision == 1


def test_role_put_and_delete() -> None:
    """Roles are stored by name and removed by DELETE."""
    state = ReplicatedState()
    state.apply(put(1, ROLE))
    assert state.roles == {"dev": ROLE}
    state.apply(removal(2, Kind.ROLE, "dev"))
    assert state.roles == {}


def test_deleting_the_preference_resets_it_to_the_default() -> None:
    """DELETE of the cluster auth preference brings back best_effort."""
    state = ReplicatedState()
    state.apply(put(1, STRICT_CAP))
    assert state.cluster_auth_preference == STRICT_CAP
    state.apply(removal(2, Kind.CLUSTER_AUTH_PREFERENCE, "cluster-auth-preference"))
    assert state.cluster_auth_preference == ClusterAuthPreference()


@pytest.mark.parametrize("revision", [0, 2, 5, -1])
def test_out_of_order_revision_raises_invariant_error_and_changes_nothing(revision: int) -> None:
    """Anything but revision + 1 (gap, replay, going back) is a bug in the caller."""
    state = ReplicatedState()
    with pytest.raises(InvariantError, match=f"event revision {revision} does not follow"):
        state.apply(put(revision, LOCK))
    assert state.locks == {}
    assert state.revision == 0


def test_replaying_the_last_event_raises_invariant_error() -> None:
    """Applying the same revision twice is refused."""
    state = ReplicatedState()
    event = put(1, LOCK)
    state.apply(event)
    with pytest.raises(InvariantError):
        state.apply(event)
    assert state.revision == 1


def test_put_event_without_resource_raises_invariant_error_and_keeps_the_revision() -> None:
    """A PUT must carry its resource; the revision does not move on failure."""
    state = ReplicatedState()
    broken = Event(1, EventType.PUT, Kind.LOCK, "l1", None, to_micros(T0))
    with pytest.raises(InvariantError, match="PUT event 1 carries no resource"):
        state.apply(broken)
    assert state.revision == 0


@pytest.mark.parametrize("kind", [Kind.USER, Kind.TOKEN])
def test_removal_of_an_unreplicated_kind_is_refused_and_keeps_the_preference(kind: Kind) -> None:
    """A user or token event is a bug, not a reset of the cluster auth preference."""
    state = ReplicatedState(cluster_auth_preference=STRICT_CAP)
    with pytest.raises(InvariantError, match="unreplicated kind"):
        state.apply(removal(1, kind, "bob"))
    assert state.cluster_auth_preference == STRICT_CAP
    assert state.revision == 0


def test_put_of_an_unreplicated_resource_is_refused() -> None:
    """A user resource in a PUT is a bug, not silently ignored."""
    state = ReplicatedState()
    event = Event(1, EventType.PUT, Kind.USER, "bob", User(name="bob"), T0)  # type: ignore[arg-type]
    with pytest.raises(InvariantError, match="not replicated"):
        state.apply(event)
    assert state.revision == 0


def test_apply_change_does_not_touch_the_revision() -> None:
    """apply_change leaves revision bookkeeping to its caller."""
    state = ReplicatedState(revision=41)
    apply_change(state, put(99, LOCK))
    assert state.revision == 41
    assert state.locks == {"l1": LOCK}


def test_from_resources_builds_the_state_at_a_revision() -> None:
    """A snapshot's resources and revision become the state."""
    state = ReplicatedState.from_resources("epoch-1", 12, [LOCK, ROLE, STRICT_CAP])
    assert (state.epoch, state.revision) == ("epoch-1", 12)
    assert state.locks == {"l1": LOCK}
    assert state.roles == {"dev": ROLE}
    assert state.cluster_auth_preference == STRICT_CAP


def test_resources_lists_the_preference_first() -> None:
    """Agents get the preference before roles and locks."""
    state = ReplicatedState.from_resources("e", 3, [LOCK, ROLE, STRICT_CAP])
    assert state.resources() == [STRICT_CAP, ROLE, LOCK]


lock_names = st.sampled_from(["a", "b", "c"])
changes = st.lists(
    st.tuples(st.sampled_from(list(EventType)), lock_names, st.sampled_from(["u1", "u2"])),
    max_size=15,
)


@given(changes)
def test_applying_events_in_order_equals_a_dict_model(
    steps: list[tuple[EventType, str, str]],
) -> None:
    """Any sequence of PUT/DELETE/EXPIRE leaves exactly the locks a dict model keeps."""
    state = ReplicatedState()
    model: dict[str, Lock] = {}
    for revision, (event_type, name, user) in enumerate(steps, start=1):
        if event_type is EventType.PUT:
            lock = Lock(name=name, target=LockTarget(user=user), expires=T0 + timedelta(hours=1))
            state.apply(put(revision, lock))
            model[name] = lock
        else:
            state.apply(removal(revision, Kind.LOCK, name, event_type))
            model.pop(name, None)
        assert state.revision == revision
    assert state.locks == model
    rebuilt = ReplicatedState.from_resources(state.epoch, state.revision, state.resources())
    assert rebuilt == state

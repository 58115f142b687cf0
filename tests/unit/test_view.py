"""LocalView, the agent's pure state machine: freshness, decisions, sessions, replication.

Every call passes its times explicitly (`now` monotonic seconds, `wall` a UTC datetime),
as the runtime does with its clock, so nothing here sleeps or reads a real clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import PreconditionError
from lockd.domain.events import Event, EventType, ReplicatedState, StreamedResource
from lockd.domain.identity import Identity
from lockd.domain.lock import STRICT_LOCKOUT_MESSAGE, Lock, LockTarget
from lockd.domain.lock_table import PackedRun
from lockd.domain.modes import LockingMode
from lockd.domain.packed_form import from_packed_forms, packed_form
from lockd.domain.resources import ClusterAuthPreference, Kind, ReplicatedResource, Role
from lockd.domain.view import (
    Decision,
    LocalView,
    SyncState,
    TerminationCause,
    ViewMismatch,
    ViewSettings,
)

SERVER = "node-1"
EPOCH = "epoch-a"
WALL = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = 1000.0  # monotonic start
HEARTBEAT = 1.0
STALENESS = 30.0

ALICE = Identity(user="alice", roles=("dev",), login="root")
BOB = Identity(user="bob", roles=("ops",))


def settings() -> ViewSettings:
    return ViewSettings(
        SERVER,
        max_staleness=timedelta(seconds=STALENESS),
        heartbeat_interval=timedelta(seconds=HEARTBEAT),
    )


def lock(name: str, message: str = "", expires: datetime | None = None, **target: str) -> Lock:
    return Lock(name, LockTarget(**target), message=message, expires=expires)


def put(revision: int, resource: Lock | Role | ClusterAuthPreference) -> Event:
    return Event.put(revision, resource, WALL)


def delete(revision: int, name: str) -> Event:
    return Event.removal(revision, EventType.DELETE, Kind.LOCK, name, WALL)


def synced_view(*resources: Lock | Role | ClusterAuthPreference, revision: int = 0) -> LocalView:
    """A connected view that just applied a snapshot at (EPOCH, revision) at time T."""
    view = LocalView(settings())
    view.set_connected(True)
    view.apply_snapshot(EPOCH, revision, [ClusterAuthPreference(), *resources], T, WALL)
    return view


def apply(view: LocalView, *events: Event, now: float = T, wall: datetime = WALL) -> list[str]:
    """Apply one contiguous batch; the ids of the sessions it terminated."""
    ended = view.apply_events(EPOCH, events[0].revision, events[-1].revision, events, now, wall)
    return [termination.session_id for termination in ended]


# -- freshness ---------------------------------------------------------------------------


def test_a_new_view_is_syncing_and_unreliable() -> None:
    """Before the first proof of freshness the view is SYNCING, which is not reliable."""
    view = LocalView(settings())
    assert view.sync_state(T) is SyncState.SYNCING
    assert not view.reliable(T)
    assert view.age(T) is None


def test_freshness_goes_synced_degraded_stale_and_back() -> None:
    """SYNCED after a snapshot, DEGRADED after three missed heartbeats, STALE after
    max_staleness, SYNCED again as soon as a heartbeat at the applied revision arrives."""
    view = synced_view()
    assert view.sync_state(T) is SyncState.SYNCED
    assert view.sync_state(T + 3 * HEARTBEAT) is SyncState.SYNCED  # not yet *past* three
    assert view.sync_state(T + 3 * HEARTBEAT + 0.01) is SyncState.DEGRADED
    assert view.reliable(T + 3 * HEARTBEAT + 0.01)
    assert view.sync_state(T + STALENESS) is SyncState.DEGRADED  # exactly the bound
    assert view.sync_state(T + STALENESS + 0.01) is SyncState.STALE
    assert not view.reliable(T + STALENESS + 0.01)
    view.heartbeat(EPOCH, 0, True, HEARTBEAT, T + 100)
    assert view.sync_state(T + 100) is SyncState.SYNCED
    assert view.age(T + 101) == pytest.approx(1.0)


def test_a_disconnected_or_unhealthy_view_is_degraded_and_unhealthy_beats_prove_nothing() -> None:
    """Disconnection or a heartbeat saying the store is unhealthy degrade the view; such
    a heartbeat does not move fresh_at, so staleness keeps counting."""
    view = synced_view()
    view.set_connected(False)
    assert view.sync_state(T + 0.1) is SyncState.DEGRADED
    view.set_connected(True)
    view.heartbeat(EPOCH, 0, False, HEARTBEAT, T + 10)
    assert view.sync_state(T + 10) is SyncState.DEGRADED
    assert view.fresh_at == T
    assert view.sync_state(T + STALENESS + 1) is SyncState.STALE
    view.heartbeat(EPOCH, 0, True, HEARTBEAT, T + STALENESS + 2)
    assert view.sync_state(T + STALENESS + 2) is SyncState.SYNCED


def test_the_heartbeat_interval_of_the_server_sets_the_degraded_threshold() -> None:
    """A heartbeat carries the server's interval; three of those missed mean DEGRADED."""
    view = synced_view()
    view.heartbeat(EPOCH, 0, True, 5.0, T)
    assert view.sync_state(T + 14) is SyncState.SYNCED
    assert view.sync_state(T + 15.5) is SyncState.DEGRADED


def test_a_heartbeat_at_another_revision_or_epoch_is_a_mismatch() -> None:
    """A heartbeat only proves freshness at the applied (epoch, revision)."""
    view = synced_view(revision=4)
    with pytest.raises(ViewMismatch):
        view.heartbeat(EPOCH, 5, True, HEARTBEAT, T + 1)
    with pytest.raises(ViewMismatch):
        view.heartbeat("epoch-b", 4, True, HEARTBEAT, T + 1)
    assert view.fresh_at == T


# -- decisions ---------------------------------------------------------------------------


def test_a_lock_in_force_denies_with_the_exact_message_and_names_the_lock() -> None:
    """SPEC §3: `lock targeting User:"alice" is in force: <message>`."""
    view = synced_view(lock("l1", "Suspicious activity.", user="alice"))
    decision = view.decide(ALICE, T, WALL)
    assert decision == Decision(
        False,
        LockingMode.BEST_EFFORT,
        'lock targeting User:"alice" is in force: Suspicious activity.',
        "l1",
    )
    assert view.decide(BOB, T, WALL).allowed


def test_without_a_message_the_reason_ends_after_in_force() -> None:
    """`: <message>` only when the message is non-empty; several fields in SPEC order."""
    view = synced_view(lock("l1", user="alice", role="dev"))
    assert (
        view.decide(ALICE, T, WALL).reason == 'lock targeting User:"alice" Role:"dev" is in force'
    )


def test_an_expiring_lock_stops_denying_at_exactly_expires() -> None:
    """In force while wall < expires; at `expires` it no longer is (SPEC §1)."""
    expires = WALL + timedelta(minutes=1)
    view = synced_view(lock("l1", expires=expires, user="alice"))
    assert not view.decide(ALICE, T, expires - timedelta(microseconds=1)).allowed
    assert view.decide(ALICE, T, expires).allowed


def test_a_server_id_lock_denies_everyone_on_this_agent_only() -> None:
    """The agent adds its own server_id to every identity: a lock on it hits all."""
    view = synced_view(lock("here", server_id=SERVER), lock("there", server_id="node-2"))
    assert view.decide(Identity(), T, WALL).lock_name == "here"
    assert view.decide(BOB, T, WALL).lock_name == "here"
    other = synced_view(lock("there", server_id="node-2"))
    assert other.decide(BOB, T, WALL).allowed


def test_the_server_id_reported_by_a_sidecar_is_replaced_by_the_agents_own() -> None:
    """An identity cannot dodge a server lock by naming another server_id."""
    view = synced_view(lock("here", server_id=SERVER))
    assert not view.decide(Identity(user="x", server_id="elsewhere"), T, WALL).allowed


def test_strict_is_refused_while_unreliable_best_effort_is_not() -> None:
    """Strict (cluster default or any role) needs SYNCED or DEGRADED; best_effort keeps
    going on the last known locks."""
    view = synced_view(Role("ops", lock_mode=LockingMode.STRICT))
    stale = T + STALENESS + 1
    strict = view.decide(BOB, stale, WALL)
    assert strict == Decision(False, LockingMode.STRICT, STRICT_LOCKOUT_MESSAGE)
    assert view.decide(BOB, T + 5, WALL).allowed  # DEGRADED is still reliable
    assert view.decide(ALICE, stale, WALL) == Decision(True, LockingMode.BEST_EFFORT)


def test_a_lock_message_wins_over_the_strict_lockout() -> None:
    """When a lock hits, the user sees the lock's message even in a stale strict view."""
    view = synced_view(lock("l1", "go away", user="bob"), Role("ops", lock_mode=LockingMode.STRICT))
    decision = view.decide(BOB, T + STALENESS + 1, WALL)
    assert (decision.reason, decision.lock_name) == (
        'lock targeting User:"bob" is in force: go away',
        "l1",
    )


def test_a_strict_cluster_default_is_not_relaxed_by_a_best_effort_role() -> None:
    """A single occurrence of strict suffices (SPEC §5); users without roles take it too."""
    view = synced_view(
        ClusterAuthPreference(LockingMode.STRICT), Role("dev", lock_mode=LockingMode.BEST_EFFORT)
    )
    assert view.mode_for(ALICE) is LockingMode.STRICT
    assert view.mode_for(Identity()) is LockingMode.STRICT


def test_a_view_loaded_from_disk_enforces_its_locks_but_is_not_reliable() -> None:
    """A persisted state keeps best_effort enforcing; strict waits for the first sync."""
    state = ReplicatedState.from_resources(
        EPOCH,
        7,
        [
            ClusterAuthPreference(),
            lock("l1", user="alice"),
            Role("ops", lock_mode=LockingMode.STRICT),
        ],
    )
    view = LocalView(settings(), state)
    assert view.sync_state(T) is SyncState.SYNCING
    assert view.decide(ALICE, T, WALL).lock_name == "l1"
    assert view.decide(BOB, T, WALL).reason == STRICT_LOCKOUT_MESSAGE
    assert view.decide(Identity(user="carol"), T, WALL).allowed


# -- sessions ----------------------------------------------------------------------------


def test_open_session_subscribes_only_when_allowed() -> None:
    """An allowed session is registered; a denied one is not."""
    view = synced_view(lock("l1", user="alice"))
    assert not view.open_session("s1", ALICE, T, WALL).allowed
    assert view.open_session("s2", BOB, T, WALL).allowed
    assert view.session_count == 1


def test_a_session_id_cannot_be_registered_twice() -> None:
    """A second registration under a live id is refused and leaves the first alone."""
    view = synced_view()
    view.open_session("s1", ALICE, T, WALL)
    with pytest.raises(PreconditionError, match='session "s1" is already registered'):
        view.open_session("s1", BOB, T, WALL)
    assert apply(view, put(1, lock("l1", user="alice"))) == ["s1"]


def test_a_new_lock_terminates_matching_sessions_with_message_and_name() -> None:
    """Only sessions the lock hits end; each termination carries the SPEC §3 text."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    view.open_session("a2", Identity(user="alice"), T, WALL)
    view.open_session("b1", BOB, T, WALL)
    ended = view.apply_events(EPOCH, 1, 1, [put(1, lock("l1", "bye", user="alice"))], T, WALL)
    assert sorted(t.session_id for t in ended) == ["a1", "a2"]
    for termination in ended:
        assert termination.reason == 'lock targeting User:"alice" is in force: bye'
        assert termination.lock_name == "l1"
        assert termination.cause is TerminationCause.LOCK
        assert termination.identity.server_id == SERVER
    assert view.session_count == 1


def test_an_unrelated_lock_terminates_nothing() -> None:
    """A lock on another user, role or server leaves every session running."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    assert (
        apply(view, put(1, lock("l1", user="mallory")), put(2, lock("l2", server_id="node-2")))
        == []
    )
    assert view.session_count == 1


def test_a_role_lock_hits_only_sessions_with_that_role() -> None:
    """`role: dev` ends alice (dev) and leaves bob (ops)."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    view.open_session("b1", BOB, T, WALL)
    assert apply(view, put(1, lock("dev-lock", role="dev"))) == ["a1"]


def test_a_server_id_lock_terminates_every_session_as_server_lock() -> None:
    """A lock on this agent's server_id ends all its sessions (cause server_lock)."""
    view = synced_view()
    for index in range(3):
        view.open_session(f"s{index}", Identity(user=f"u{index}"), T, WALL)
    ended = view.apply_events(EPOCH, 1, 1, [put(1, lock("node", server_id=SERVER))], T, WALL)
    assert sorted(t.session_id for t in ended) == ["s0", "s1", "s2"]
    assert {t.cause for t in ended} == {TerminationCause.SERVER_LOCK}
    assert ended[0].reason == f'lock targeting ServerID:"{SERVER}" is in force'


def test_an_already_expired_lock_terminates_nothing() -> None:
    """A lock whose expires has passed here is not in force: no session ends."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    assert apply(view, put(1, lock("old", expires=WALL, user="alice"))) == []
    assert view.decide(ALICE, T, WALL).allowed


def test_deleting_a_lock_allows_new_sessions_but_revives_nothing() -> None:
    """After a delete alice may open sessions again; the ended one stays ended."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    assert apply(view, put(1, lock("l1", user="alice"))) == ["a1"]
    assert apply(view, delete(2, "l1")) == []
    assert view.session_count == 0
    assert view.open_session("a2", ALICE, T, WALL).allowed


def test_a_lock_put_and_deleted_within_one_batch_still_terminates() -> None:
    """The lock was in force at its revision: the sessions it hit end even though the
    same batch deletes it; new sessions are allowed afterwards."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    assert apply(view, put(1, lock("blip", user="alice")), delete(2, "blip")) == ["a1"]
    assert view.decide(ALICE, T, WALL).allowed


def test_a_closed_session_is_no_longer_signalled() -> None:
    """close_session unsubscribes: a later lock finds nothing to end."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    view.close_session("a1")
    view.close_session("a1")  # idempotent
    assert apply(view, put(1, lock("l1", user="alice"))) == []


def test_tick_ends_strict_sessions_once_stale_and_keeps_best_effort_ones() -> None:
    """STALE: every strict session ends with the preventive lock-out; DEGRADED ends none."""
    view = synced_view(Role("ops", lock_mode=LockingMode.STRICT))
    view.open_session("strict", BOB, T, WALL)
    view.open_session("best", ALICE, T, WALL)
    assert view.tick(T + 10, WALL) == []  # DEGRADED
    ended = view.tick(T + STALENESS + 1, WALL)
    assert [(t.session_id, t.reason, t.lock_name, t.cause) for t in ended] == [
        ("strict", STRICT_LOCKOUT_MESSAGE, "", TerminationCause.STRICT_STALE)
    ]
    assert view.tick(T + STALENESS + 2, WALL) == []  # not twice
    assert view.session_count == 1


def test_a_role_turning_strict_is_seen_by_the_next_tick() -> None:
    """Mode is resolved from the current roles, so a role made strict while the view is
    stale ends that role's sessions."""
    view = synced_view(Role("dev"))
    view.open_session("a1", ALICE, T, WALL)
    apply(view, put(1, Role("dev", lock_mode=LockingMode.STRICT)))
    assert [t.session_id for t in view.tick(T + STALENESS + 1, WALL)] == ["a1"]


# -- replication ---------------------------------------------------------------------------


def test_a_gap_is_refused_and_changes_nothing_then_the_right_batch_terminates_once() -> None:
    """Events 2..2 after revision 0 are a gap: ViewMismatch, no state change; after the
    resume 1..2 ends the session exactly once, and a duplicate batch is ignored."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    with pytest.raises(ViewMismatch):
        view.apply_events(EPOCH, 2, 2, [put(2, lock("l1", user="alice"))], T, WALL)
    assert (view.state.revision, len(view.locks), view.session_count) == (0, 0, 1)
    batch = [put(1, lock("l0", user="zed")), put(2, lock("l1", user="alice"))]
    assert apply(view, *batch) == ["a1"]
    assert apply(view, *batch) == []  # already applied
    assert view.state.revision == 2


def test_a_batch_must_carry_every_revision_it_claims() -> None:
    """A batch 1..3 with fewer events, or with revisions out of order, is a mismatch:
    the view never advances past a change it did not see."""
    view = synced_view()
    view.open_session("a1", ALICE, T, WALL)
    event = put(1, lock("l0", user="zed"))
    with pytest.raises(ViewMismatch):
        view.apply_events(EPOCH, 1, 3, [event], T, WALL)
    with pytest.raises(ViewMismatch):
        view.apply_events(EPOCH, 1, 1, [], T, WALL)
    with pytest.raises(ViewMismatch):
        view.apply_events(EPOCH, 1, 2, [put(2, lock("x", user="y")), event], T, WALL)
    assert view.state.revision == 0
    assert apply(view, event, put(2, lock("l1", user="alice"))) == ["a1"]


def test_events_of_another_epoch_are_refused() -> None:
    """A revision is only meaningful with its epoch."""
    view = synced_view()
    with pytest.raises(ViewMismatch):
        view.apply_events("epoch-b", 1, 1, [put(1, lock("l1", user="alice"))], T, WALL)
    assert view.state.revision == 0


def test_events_and_snapshots_prove_freshness() -> None:
    """An applied batch moves fresh_at, so the view is SYNCED again."""
    view = synced_view()
    later = T + STALENESS + 5
    assert view.sync_state(later) is SyncState.STALE
    apply(view, put(1, lock("l1", user="x")), now=later)
    assert view.sync_state(later) is SyncState.SYNCED


def test_an_older_snapshot_of_the_same_epoch_is_refused() -> None:
    """A node never accepts state older than it has applied."""
    view = synced_view(lock("l1", user="alice"), revision=5)
    with pytest.raises(ViewMismatch):
        view.apply_snapshot(EPOCH, 4, [ClusterAuthPreference()], T + 1, WALL)
    assert view.state.revision == 5
    assert not view.decide(ALICE, T, WALL).allowed


def test_a_snapshot_of_a_new_epoch_replaces_everything_even_at_a_lower_revision() -> None:
    """Epoch change: the new history is the truth; locks absent from it are gone and new
    ones end the sessions they hit."""
    view = synced_view(lock("l1", user="alice"), revision=9)
    view.open_session("b1", BOB, T, WALL)
    ended = view.apply_snapshot(
        "epoch-b", 2, [ClusterAuthPreference(), lock("l2", user="bob")], T + 1, WALL
    )
    assert [t.session_id for t in ended] == ["b1"]
    assert (view.state.epoch, view.state.revision) == ("epoch-b", 2)
    assert view.decide(ALICE, T + 1, WALL).allowed


def test_a_resync_snapshot_terminates_only_for_new_or_changed_locks() -> None:
    """A snapshot that repeats a known lock ends nobody twice; a changed lock counts."""
    view = synced_view(lock("l1", user="mallory"), revision=3)
    view.open_session("a1", ALICE, T, WALL)
    same: list[ReplicatedResource] = [ClusterAuthPreference(), lock("l1", user="mallory")]
    assert view.apply_snapshot(EPOCH, 3, same, T + 1, WALL) == []
    changed: list[ReplicatedResource] = [ClusterAuthPreference(), lock("l1", user="alice")]
    assert [t.session_id for t in view.apply_snapshot(EPOCH, 4, changed, T + 2, WALL)] == ["a1"]


def _chunk(
    packed: bool, *resources: Lock | ClusterAuthPreference
) -> tuple[list[StreamedResource], PackedRun | None]:
    """A snapshot chunk as the view takes it: its locks as objects, or (`packed`) as the
    run a chunk of packed locks is read into (lockd.wire.convert)."""
    if not packed:
        return list(resources), None
    locks = [resource for resource in resources if isinstance(resource, Lock)]
    run = from_packed_forms([data for lock in locks if (data := packed_form(lock)) is not None])
    return [resource for resource in resources if not isinstance(resource, Lock)], run


@pytest.mark.parametrize("packed", [False, True], ids=["objects", "packed-run"])
def test_a_snapshot_applied_chunk_by_chunk_refuses_what_either_view_refuses_until_it_ends(
    packed: bool,
) -> None:
    """Chunks go into the view as they arrive: until SnapshotEnd it holds the old locks
    and the snapshot's (a session a new lock hits ends at once), at the old revision;
    the end drops what the snapshot did not name and takes its revision. The same when
    the chunks' locks come packed, as a run."""
    carol = Identity(user="carol")
    view = synced_view(lock("l1", user="alice"), lock("l2", user="bob"), revision=3)
    view.open_session("c1", carol, T, WALL)
    view.begin_snapshot(EPOCH, 7)
    resources, run = _chunk(packed, ClusterAuthPreference(), lock("l2", user="bob"))
    assert view.add_to_snapshot(resources, WALL, run) == []
    resources, run = _chunk(packed, lock("l3", user="carol", message="new"))
    ended = view.add_to_snapshot(resources, WALL, run)
    assert [t.session_id for t in ended] == ["c1"]
    assert view.state.revision == 3
    assert not any(view.decide(who, T, WALL).allowed for who in (ALICE, BOB, carol))
    assert view.end_snapshot(EPOCH, 7, 3, T + 1) == []
    assert (view.state.revision, sorted(view.locks)) == (7, ["l2", "l3"])
    assert view.decide(ALICE, T + 1, WALL).allowed


def test_a_snapshot_is_refused_unless_it_ends_as_it_began_with_its_count() -> None:
    """An end of another revision or count, a chunk without a begin, or one after the
    stream dropped (the snapshot is abandoned) is a mismatch; the view keeps its
    revision and every lock it held."""
    view = synced_view(lock("l1", user="alice"), revision=3)
    with pytest.raises(ViewMismatch):
        view.add_to_snapshot([ClusterAuthPreference()], WALL)
    view.begin_snapshot(EPOCH, 5)
    view.add_to_snapshot([ClusterAuthPreference(), lock("l2", user="bob")], WALL)
    with pytest.raises(ViewMismatch):
        view.end_snapshot(EPOCH, 6, 2, T)
    view.begin_snapshot(EPOCH, 5)
    view.add_to_snapshot([ClusterAuthPreference()], WALL)
    with pytest.raises(ViewMismatch):
        view.end_snapshot(EPOCH, 5, 2, T)
    view.begin_snapshot(EPOCH, 5)
    view.set_connected(False)
    with pytest.raises(ViewMismatch):
        view.add_to_snapshot([ClusterAuthPreference()], WALL)
    assert (view.state.revision, sorted(view.locks)) == (3, ["l1", "l2"])


# -- property: no session slips past a lock ------------------------------------------------

USERS = ("alice", "bob")
ROLES = ("dev", "ops")

step = st.one_of(
    st.tuples(st.just("open"), st.sampled_from(USERS), st.sampled_from(ROLES)),
    st.tuples(st.just("lock"), st.sampled_from(("user", "role")), st.sampled_from(USERS + ROLES)),
    st.tuples(st.just("unlock"), st.integers(0, 5), st.just("")),
    st.tuples(st.just("close"), st.integers(0, 30), st.just("")),
)


@given(st.lists(step, max_size=40))
def test_every_session_is_either_denied_or_terminated_by_a_lock_that_hits_it(
    steps: list[tuple[str, object, str]],
) -> None:
    """Any interleaving of registrations, lock puts/deletes and closes: a session is live
    only while no in-force lock hits it; every termination is for a lock that hits it,
    and no session is terminated twice."""
    view = synced_view()
    live: dict[str, Identity] = {}
    locks: dict[str, Lock] = {}
    ended: list[str] = []
    revision = 0
    for index, (action, first, second) in enumerate(steps):
        if action == "open":
            identity = Identity(user=str(first), roles=(second,))
            decision = view.open_session(f"s{index}", identity, T, WALL)
            hits = [
                lk
                for lk in locks.values()
                if set(lk.target.pairs()) & set(identity.query_targets())
            ]
            assert decision.allowed == (not hits)
            if decision.allowed:
                live[f"s{index}"] = identity
        elif action == "lock":
            revision += 1
            new = Lock(f"l{revision % 6}", LockTarget(**{str(first): second}))
            locks[new.name] = new
            for termination in view.apply_events(
                EPOCH, revision, revision, [put(revision, new)], T, WALL
            ):
                assert termination.lock_name == new.name
                assert live.pop(termination.session_id) is not None
                ended.append(termination.session_id)
        elif action == "unlock":
            revision += 1
            name = f"l{first}"
            locks.pop(name, None)
            assert apply(view, delete(revision, name)) == []
        else:
            session = f"s{first}"
            view.close_session(session)
            live.pop(session, None)
        for session, identity in live.items():
            targets = set(identity.on_server(SERVER).query_targets())
            assert not any(set(lk.target.pairs()) & targets for lk in locks.values()), session
    assert len(ended) == len(set(ended))
    assert view.session_count == len(live)

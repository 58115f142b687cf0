"""The auth server's use cases: locks, roles, users and the cluster auth preference.

Each call authorises its caller (RBAC and locks on the caller, SPEC §6), validates,
commits through the store, hands the committed events to the replication hub, and
writes the audit trail. Reads of replicated kinds come from the hub's state, which is
exactly what agents see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from lockd.auth.agents import AgentRegistry
from lockd.auth.hub import ReplicationHub
from lockd.domain import rbac
from lockd.domain.documents import encode_resource
from lockd.domain.errors import (
    AccessDeniedError,
    LockedError,
    NotFoundError,
    PreconditionError,
    ValidationError,
)
from lockd.domain.events import Event, ReplicatedState
from lockd.domain.identity import Identity
from lockd.domain.index import LockIndex
from lockd.domain.lock import Lock, LockTarget, access_denied_message
from lockd.domain.modes import LockingMode
from lockd.domain.ports import Clock, PutMode, Store
from lockd.domain.presets import PRESET_ROLES
from lockd.domain.rbac import Caller, CallerKind
from lockd.domain.resources import ClusterAuthPreference, Kind, Role, User, Verb
from lockd.domain.timeparse import format_rfc3339
from lockd.obs.audit import (
    CAP_UPDATED,
    ROLE_CREATED,
    ROLE_DELETED,
    ROLE_UPDATED,
    USER_CREATED,
    USER_DELETED,
    USER_UPDATED,
    AuditSink,
    access_denied,
    change,
    lock_created,
    lock_deleted,
    lock_expired,
    lock_updated,
)

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    name: str
    version: str
    static_locking_mode: LockingMode | None


class AuthService:
    def __init__(
        self,
        store: Store,
        hub: ReplicationHub,
        agents: AgentRegistry,
        clock: Clock,
        audit: AuditSink,
        cluster: ClusterInfo,
    ) -> None:
        self.store = store
        self.hub = hub
        self.agents = agents
        # The hub marks the batch holding an awaited revision (create_lock's await_ack).
        hub.awaited = lambda: agents.awaited
        self.clock = clock
        self.audit = audit
        self.cluster = cluster
        # Locks applied to API callers: indexed like the agents' view.
        self.lock_index = LockIndex(hub.state.locks.values())
        hub.on_batch.append(self._index_batch)
        hub.on_rebase.append(self._reindex)

    def _reindex(self, state: ReplicatedState) -> None:
        self.lock_index = LockIndex(state.locks.values())

    def _index_batch(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind is not Kind.LOCK:
                continue
            if isinstance(event.resource, Lock):
                self.lock_index.put(event.resource)
            else:
                self.lock_index.remove(event.name)

    # -- authorisation -------------------------------------------------------------

    def authorize(self, caller: Caller, resource: Kind, verbs: Iterable[Verb]) -> None:
        """Refuse a locked caller (admins too), then check RBAC; audit every refusal."""
        self.check_not_locked(caller)
        try:
            rbac.authorize(caller, self.hub.state.roles, resource, verbs)
        except AccessDeniedError as error:
            self._audit_denied(caller, str(error), "")
            raise

    def check_not_locked(self, caller: Caller) -> None:
        self.check_identity_not_locked(caller.identity(), caller)

    def check_identity_not_locked(self, identity: Identity, caller: Caller) -> None:
        """LockedError (SPEC §3 text, audited) when a lock in force hits `identity`,
        which `caller` acts as or asks credentials for."""
        hit = self.lock_index.first_hit(identity.query_targets(), self.clock.now())
        if hit is not None:
            message = hit.in_force_message()
            self._audit_denied(caller, message, hit.name, identity)
            raise LockedError(message, hit.name)

    def authorize_status(self, caller: Caller) -> None:
        """Cluster status names every agent: admins and users who may list locks (what
        `lockctl lock --wait` needs), never agents."""
        if caller.kind is CallerKind.AGENT:
            self.check_not_locked(caller)
            message = access_denied_message("read", "cluster status")
            self._audit_denied(caller, message, "")
            raise AccessDeniedError(message)
        self.authorize(caller, Kind.LOCK, rbac.LIST)

    def _audit_denied(
        self, caller: Caller, reason: str, lock_name: str, identity: Identity | None = None
    ) -> None:
        self.audit.emit(
            access_denied(
                identity or caller.identity(),
                reason,
                self.hub.state.cluster_auth_preference.locking_mode,
                self.cluster.name,
                self.clock.now(),
                lock=lock_name,
                by=caller.name,
                source=caller.source,
            )
        )

    # -- locks ---------------------------------------------------------------------

    async def create_lock(
        self, caller: Caller, lock: Lock, *, await_ack: bool = False
    ) -> tuple[Lock, int]:
        """`await_ack`: the caller will wait for the agents' acks (lockctl lock --wait);
        asked for before the event goes out, so its own frame carries the request."""
        self.authorize(caller, Kind.LOCK, rbac.PUT)
        stamped = self._stamp(caller, lock)
        committed = await self.store.put(stamped, PutMode.CREATE, self.clock.now())
        if await_ack:
            self.agents.request_ack(committed.event.revision)
        self.hub.publish([committed.event])
        self.audit.emit(
            lock_created(
                stamped, caller.name, self.cluster.name, committed.event.time, caller.source
            )
        )
        return stamped, committed.event.revision

    async def upsert_lock(self, caller: Caller, lock: Lock) -> tuple[Lock, int, bool]:
        self.authorize(caller, Kind.LOCK, rbac.PUT)
        stamped = self._stamp(caller, lock)
        committed = await self.store.put(stamped, PutMode.UPSERT, self.clock.now())
        self.hub.publish([committed.event])
        record = lock_created if committed.created else lock_updated
        self.audit.emit(
            record(stamped, caller.name, self.cluster.name, committed.event.time, caller.source)
        )
        return stamped, committed.event.revision, committed.created

    def _stamp(self, caller: Caller, lock: Lock) -> Lock:
        lock.validate()
        now = self.clock.now()
        if lock.expires is not None and lock.expires <= now:
            raise ValidationError(
                f"lock expires {format_rfc3339(lock.expires)}, which is not in the future"
            )
        return replace(lock, created_at=now, created_by=caller.name)

    def get_lock(self, caller: Caller, name: str) -> Lock:
        self.authorize(caller, Kind.LOCK, rbac.GET)
        lock = self.hub.state.locks.get(name)
        if lock is None:
            raise NotFoundError(f'lock "{name}" not found')
        return lock

    def list_locks(
        self,
        caller: Caller,
        *,
        in_force_only: bool = False,
        targets: Sequence[LockTarget] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[Lock], str]:
        """Locks sorted by name, one page at a time; the token is the last name sent."""
        self.authorize(caller, Kind.LOCK, rbac.LIST)
        if page_size < 0:
            raise ValidationError("page_size must not be negative")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        now = self.clock.now()
        chosen = sorted(
            (
                lock
                for lock in self.hub.state.locks.values()
                if lock.name > page_token
                and (not in_force_only or lock.in_force(now))
                and (not targets or any(query.matches(lock.target) for query in targets))
            ),
            key=lambda lock: lock.name,
        )
        page = chosen[:size]
        return page, page[-1].name if len(chosen) > size else ""

    async def delete_lock(self, caller: Caller, name: str) -> int:
        self.authorize(caller, Kind.LOCK, rbac.DELETE)
        known = self.hub.state.locks.get(name)
        event = await self.store.delete(Kind.LOCK, name, self.clock.now())
        self.hub.publish([event])
        self.audit.emit(
            lock_deleted(known or name, caller.name, self.cluster.name, event.time, caller.source)
        )
        return event.revision

    def publish_expired(self, events: Sequence[Event]) -> None:
        """Hand EXPIRE events from the reaper to the hub and the audit trail."""
        for event in events:
            lock = self.hub.state.locks.get(event.name)
            self.audit.emit(lock_expired(lock or event.name, self.cluster.name, event.time))
        self.hub.publish(events)

    # -- cluster auth preference ---------------------------------------------------

    def get_cluster_auth_preference(
        self, caller: Caller
    ) -> tuple[ClusterAuthPreference, LockingMode]:
        """The resource, and the mode in effect (the static config wins, as in Teleport)."""
        self.authorize(caller, Kind.CLUSTER_AUTH_PREFERENCE, rbac.GET)
        cap = self.hub.state.cluster_auth_preference
        return cap, self.cluster.static_locking_mode or cap.locking_mode

    async def set_cluster_auth_preference(self, caller: Caller, cap: ClusterAuthPreference) -> int:
        self.authorize(caller, Kind.CLUSTER_AUTH_PREFERENCE, rbac.PUT)
        if self.cluster.static_locking_mode is not None:
            raise PreconditionError(
                "the locking mode is set in the auth server's config file "
                "(auth_service.authentication.locking_mode); change it there and restart"
            )
        revision = await self._put_cap(cap)
        fields = {"locking_mode": cap.locking_mode.value}
        self._audit_change(CAP_UPDATED, fields, caller)
        return revision

    async def apply_static_locking_mode(self) -> None:
        """Make the replicated preference carry the config file's mode (the file wins)."""
        mode = self.cluster.static_locking_mode
        if mode is not None and self.hub.state.cluster_auth_preference.locking_mode is not mode:
            await self._put_cap(ClusterAuthPreference(locking_mode=mode))

    async def _put_cap(self, cap: ClusterAuthPreference) -> int:
        committed = await self.store.put(cap, PutMode.UPSERT, self.clock.now())
        self.hub.publish([committed.event])
        return committed.event.revision

    # -- roles -----------------------------------------------------------------------

    def get_role(self, caller: Caller, name: str) -> Role:
        self.authorize(caller, Kind.ROLE, rbac.GET)
        role = self.hub.state.roles.get(name)
        if role is None:
            raise NotFoundError(f'role "{name}" not found')
        return role

    def list_roles(self, caller: Caller) -> list[Role]:
        self.authorize(caller, Kind.ROLE, rbac.LIST)
        return sorted(self.hub.state.roles.values(), key=lambda role: role.name)

    async def put_role(self, caller: Caller, role: Role, mode: PutMode) -> tuple[bool, int]:
        self.authorize(caller, Kind.ROLE, _verbs_for(mode))
        role.validate()
        committed = await self.store.put(role, mode, self.clock.now())
        self.hub.publish([committed.event])
        fields = {"name": role.name, "role": encode_resource(role)["spec"]}
        self._audit_change(ROLE_CREATED if committed.created else ROLE_UPDATED, fields, caller)
        return committed.created, committed.event.revision

    async def delete_role(self, caller: Caller, name: str) -> int:
        self.authorize(caller, Kind.ROLE, rbac.DELETE)
        event = await self.store.delete(Kind.ROLE, name, self.clock.now())
        self.hub.publish([event])
        self._audit_change(ROLE_DELETED, {"name": name}, caller)
        return event.revision

    async def create_preset_roles(self) -> list[str]:
        """On a store that has never committed anything, create the preset roles
        (lockd.domain.presets); the names created (none on any later start)."""
        if self.hub.revision != 0:
            return []
        system = Caller.system()
        for role in PRESET_ROLES:
            await self.put_role(system, role, PutMode.CREATE)
        return [role.name for role in PRESET_ROLES]

    def _audit_change(self, event: str, fields: Mapping[str, object], caller: Caller) -> None:
        self.audit.emit(
            change(event, fields, caller.name, caller.source, self.cluster.name, self.clock.now())
        )

    # -- users -------------------------------------------------------------------------

    async def get_user(self, caller: Caller, name: str) -> User:
        self.authorize(caller, Kind.USER, rbac.GET)
        user = await self.store.get_user(name)
        if user is None:
            raise NotFoundError(f'user "{name}" not found')
        return user

    async def list_users(self, caller: Caller) -> list[User]:
        self.authorize(caller, Kind.USER, rbac.LIST)
        return sorted(await self.store.list_users(), key=lambda user: user.name)

    async def put_user(self, caller: Caller, user: User, mode: PutMode) -> bool:
        self.authorize(caller, Kind.USER, _verbs_for(mode))
        user.validate()
        for role in user.roles:  # as `lockctl users add` says it
            if role not in self.hub.state.roles:
                raise NotFoundError(f'role "{role}" not found')
        created = await self.store.put_user(user, mode)
        fields = {"name": user.name, "roles": list(user.roles)}
        self._audit_change(USER_CREATED if created else USER_UPDATED, fields, caller)
        return created

    async def delete_user(self, caller: Caller, name: str) -> None:
        self.authorize(caller, Kind.USER, rbac.DELETE)
        await self.store.delete_user(name)
        self._audit_change(USER_DELETED, {"name": name}, caller)


def _verbs_for(mode: PutMode) -> tuple[Verb, ...]:
    return {PutMode.CREATE: rbac.CREATE, PutMode.UPDATE: (Verb.UPDATE,)}.get(mode, rbac.PUT)

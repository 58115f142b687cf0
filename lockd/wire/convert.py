"""Protobuf ⇄ domain conversion for every lockd.v1 message that carries a resource.

Conversion from protobuf validates: a value that leaves this module is a valid domain
value or a ValidationError was raised. That includes values the wire format admits but
the domain cannot hold — a Timestamp past year 9999 or before year 1, nanos outside
[0, 1e9), a Duration beyond ±10,000 years, an enum number no name is defined for: each
is INVALID_ARGUMENT with the field's name, never an exception from the protobuf runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from lockd.domain.errors import ValidationError
from lockd.domain.events import Event, EventType, StreamedResource, unpacked
from lockd.domain.identity import Identity
from lockd.domain.lock import Lock, LockTarget, TargetPair, validate_lock_text
from lockd.domain.lock_table import PackedLock, PackedRun, pack
from lockd.domain.modes import LockingMode
from lockd.domain.packed_form import from_packed_form, from_packed_forms, packed_form
from lockd.domain.ports import PutMode
from lockd.domain.resources import (
    ClusterAuthPreference,
    Kind,
    ReplicatedResource,
    Role,
    Rule,
    User,
)
from lockd.domain.view import SyncState
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import resources_pb2 as pb
from lockd.v1 import watch_service_pb2 as watch_pb

T = TypeVar("T")

MODE_TO_PB = {
    None: pb.LOCKING_MODE_UNSPECIFIED,
    LockingMode.BEST_EFFORT: pb.LOCKING_MODE_BEST_EFFORT,
    LockingMode.STRICT: pb.LOCKING_MODE_STRICT,
}
MODE_FROM_PB = {value: key for key, value in MODE_TO_PB.items()}
KIND_TO_PB = {
    Kind.LOCK: pb.RESOURCE_KIND_LOCK,
    Kind.ROLE: pb.RESOURCE_KIND_ROLE,
    Kind.CLUSTER_AUTH_PREFERENCE: pb.RESOURCE_KIND_CLUSTER_AUTH_PREFERENCE,
    Kind.USER: pb.RESOURCE_KIND_USER,
}
KIND_FROM_PB = {value: key for key, value in KIND_TO_PB.items()}
EVENT_TYPE_TO_PB = {
    EventType.PUT: watch_pb.EVENT_TYPE_PUT,
    EventType.DELETE: watch_pb.EVENT_TYPE_DELETE,
    EventType.EXPIRE: watch_pb.EVENT_TYPE_EXPIRE,
}
EVENT_TYPE_FROM_PB = {value: key for key, value in EVENT_TYPE_TO_PB.items()}

PUT_MODE_FROM_PB: dict[int, PutMode] = {
    cluster_pb.PUT_MODE_UNSPECIFIED: PutMode.UPSERT,
    cluster_pb.PUT_MODE_CREATE: PutMode.CREATE,
    cluster_pb.PUT_MODE_UPDATE: PutMode.UPDATE,
    cluster_pb.PUT_MODE_UPSERT: PutMode.UPSERT,
}

# An agent's state as clients print it (the server's states and its own verdicts).
AGENT_STATE_NAMES = {
    cluster_pb.AGENT_SYNC_STATE_UNSPECIFIED: "unknown",
    cluster_pb.AGENT_SYNC_STATE_SYNCING: "syncing",
    cluster_pb.AGENT_SYNC_STATE_SYNCED: "synced",
    cluster_pb.AGENT_SYNC_STATE_DEGRADED: "degraded",
    cluster_pb.AGENT_SYNC_STATE_STALE: "stale",
    cluster_pb.AGENT_SYNC_STATE_UNRESPONSIVE: "unresponsive",
    cluster_pb.AGENT_SYNC_STATE_LOCKED: "locked",
}

SYNC_STATE_TO_PB = {
    SyncState.SYNCING: cluster_pb.AGENT_SYNC_STATE_SYNCING,
    SyncState.SYNCED: cluster_pb.AGENT_SYNC_STATE_SYNCED,
    SyncState.DEGRADED: cluster_pb.AGENT_SYNC_STATE_DEGRADED,
    SyncState.STALE: cluster_pb.AGENT_SYNC_STATE_STALE,
}


def timestamp_to_pb(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    # What Timestamp.FromDatetime computes, by timedelta arithmetic (it runs for every
    # agent of every `lockctl status`, and `lock --wait` polls that).
    since = moment.astimezone(UTC) - _EPOCH
    seconds = since.days * 86_400 + since.seconds
    return Timestamp(seconds=seconds, nanos=since.microseconds * 1000)


# google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
# google.protobuf.Duration: about ±10,000 years.
DURATION_MAX_SECONDS = 315_576_000_000
NANOS_PER_SECOND = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_from_pb(message: object, field: str, label: str = "") -> datetime | None:
    """The timestamp in `message.field`, or None when the field is unset.

    ValidationError naming `label` (default: `field`) when it is outside the range a
    Timestamp may hold.
    """
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    # What Timestamp.ToDatetime(tzinfo=UTC) computes, without its own checks and calls.
    return _EPOCH + timedelta(microseconds=_micros(getattr(message, field), label or field))


def _micros(stamp: Timestamp, label: str) -> int:
    """A set Timestamp as microseconds since 1970; ValidationError naming `label` when
    it is outside the range a Timestamp may hold (one chained comparison: every lock
    and event an agent receives carries one or two)."""
    seconds, nanos = stamp.seconds, stamp.nanos
    if TIMESTAMP_MIN_SECONDS <= seconds <= TIMESTAMP_MAX_SECONDS and 0 <= nanos < NANOS_PER_SECOND:
        return seconds * 1_000_000 + nanos // 1000
    if not TIMESTAMP_MIN_SECONDS <= seconds <= TIMESTAMP_MAX_SECONDS:
        raise ValidationError(
            f"{label}: timestamp seconds {seconds} out of range "
            "(0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z)"
        )
    raise ValidationError(f"{label}: timestamp nanos {nanos} out of range (0 to 999999999)")


def duration_to_pb(value: timedelta) -> Duration:
    duration = Duration()
    duration.FromTimedelta(value)
    return duration


def timedelta_seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def duration_from_pb(value: Duration, label: str = "duration") -> timedelta:
    """The duration, or ValidationError naming `label` when a Duration cannot hold it."""
    if not -DURATION_MAX_SECONDS <= value.seconds <= DURATION_MAX_SECONDS:
        raise ValidationError(
            f"{label}: duration seconds {value.seconds} out of range (±{DURATION_MAX_SECONDS})"
        )
    if not -NANOS_PER_SECOND < value.nanos < NANOS_PER_SECOND:
        raise ValidationError(f"{label}: duration nanos {value.nanos} out of range (±999999999)")
    if (value.seconds > 0 and value.nanos < 0) or (value.seconds < 0 and value.nanos > 0):
        raise ValidationError(f"{label}: duration seconds and nanos have different signs")
    return value.ToTimedelta()


def enum_from_pb(table: Mapping[int, T], value: int, label: str) -> T:
    """`table[value]`, or ValidationError naming `label` for a number outside the table
    (proto3 enums are open: any int32 arrives)."""
    try:
        return table[value]
    except KeyError:
        known = ", ".join(str(number) for number in sorted(table))
        raise ValidationError(f"{label}: unknown enum value {value} (known: {known})") from None


def target_to_pb(target: LockTarget) -> pb.LockTarget:
    return pb.LockTarget(**target.as_dict())


def target_from_pb(message: pb.LockTarget) -> LockTarget:
    # Positional, in TARGET_FIELDS order (LockTarget's field order): no dict per lock.
    return LockTarget(
        message.user,
        message.role,
        message.login,
        message.mfa_device,
        message.device,
        message.server_id,
        message.windows_desktop,
        message.access_request,
        message.bot_instance_id,
        message.join_token,
    )


def lock_to_pb(lock: Lock) -> pb.Lock:
    return pb.Lock(
        name=lock.name,
        target=target_to_pb(lock.target),
        message=lock.message,
        expires=timestamp_to_pb(lock.expires),
        created_at=timestamp_to_pb(lock.created_at),
        created_by=lock.created_by,
    )


def lock_from_pb(message: pb.Lock, *, validate: bool = True) -> Lock:
    """A lock, validated unless the caller validates later (servicers authorise first,
    so an unauthorised caller learns nothing from validation errors)."""
    # Positional, in Lock's field order: this runs for every lock an agent receives.
    lock = Lock(
        message.name,
        target_from_pb(message.target),
        message.message,
        timestamp_from_pb(message, "expires", "lock.expires"),
        timestamp_from_pb(message, "created_at", "lock.created_at"),
        message.created_by,
    )
    if validate:
        lock.validate()
    return lock


# A target field's descriptor → its name (the descriptor's `name` builds a new str).
_TARGET_FIELD_NAME = {field: field.name for field in pb.LockTarget.DESCRIPTOR.fields}


def streamed_lock_from_pb(message: pb.Lock) -> PackedLock | Lock:
    """A lock an agent receives, validated, packed as its view files it (a `Lock`
    when it cannot be packed): no `LockTarget`, `Lock` or datetime is built for it."""
    # ListFields: the set target fields, in field-number (= TARGET_FIELDS) order. Most
    # locks target one field: that pair without a comprehension's frame.
    fields = message.target.ListFields()
    if len(fields) == 1:
        ((field, value),) = fields
        pairs: tuple[TargetPair, ...] = ((_TARGET_FIELD_NAME[field], value),)
    else:
        pairs = tuple([(_TARGET_FIELD_NAME[field], value) for field, value in fields])
    name, text, created_by = message.name, message.message, message.created_by
    has = message.HasField
    expires = _micros(message.expires, "lock.expires") if has("expires") else None
    created = _micros(message.created_at, "lock.created_at") if has("created_at") else None
    validate_lock_text(name, pairs, text, created_by)
    packed = pack(name, pairs, text, expires, created, created_by)
    return lock_from_pb(message) if packed is None else packed


def _rules_to_pb(rules: tuple[Rule, ...]) -> list[pb.RoleRule]:
    return [pb.RoleRule(resources=rule.resources, verbs=rule.verbs) for rule in rules]


def _rules_from_pb(rules: object) -> tuple[Rule, ...]:
    return tuple(
        Rule(resources=tuple(rule.resources), verbs=tuple(rule.verbs))
        for rule in rules  # type: ignore[attr-defined]
    )


def role_to_pb(role: Role) -> pb.Role:
    return pb.Role(
        name=role.name,
        allow_rules=_rules_to_pb(role.allow),
        deny_rules=_rules_to_pb(role.deny),
        lock_mode=MODE_TO_PB[role.lock_mode],
    )


def role_from_pb(message: pb.Role, *, validate: bool = True) -> Role:
    role = Role(
        name=message.name,
        allow=_rules_from_pb(message.allow_rules),
        deny=_rules_from_pb(message.deny_rules),
        lock_mode=_mode_from_pb(message.lock_mode, "role.lock_mode"),
    )
    if validate:
        role.validate()
    return role


def _mode_from_pb(value: int, label: str) -> LockingMode | None:
    if value not in MODE_FROM_PB:
        raise ValidationError(f'{label}: locking mode "{value}" not supported')
    return MODE_FROM_PB[value]  # type: ignore[index]


def put_mode_from_pb(value: int, label: str = "mode") -> PutMode:
    return enum_from_pb(PUT_MODE_FROM_PB, value, label)


def cap_to_pb(cap: ClusterAuthPreference) -> pb.ClusterAuthPreference:
    return pb.ClusterAuthPreference(locking_mode=MODE_TO_PB[cap.locking_mode])


def cap_from_pb(message: pb.ClusterAuthPreference) -> ClusterAuthPreference:
    mode = _mode_from_pb(message.locking_mode, "cluster_auth_preference.locking_mode")
    return ClusterAuthPreference() if mode is None else ClusterAuthPreference(locking_mode=mode)


def user_to_pb(user: User) -> pb.User:
    return pb.User(name=user.name, roles=user.roles)


def user_from_pb(message: pb.User, *, validate: bool = True) -> User:
    user = User(name=message.name, roles=tuple(message.roles))
    if validate:
        user.validate()
    return user


def resource_to_pb(resource: ReplicatedResource) -> pb.Resource:
    match resource:
        case Lock():
            return pb.Resource(lock=lock_to_pb(resource))
        case Role():
            return pb.Resource(role=role_to_pb(resource))
        case ClusterAuthPreference():
            return pb.Resource(cluster_auth_preference=cap_to_pb(resource))


def resource_from_pb(message: pb.Resource) -> StreamedResource:
    """A resource of a snapshot or an event (locks packed: `streamed_lock_from_pb`)."""
    which = message.WhichOneof("resource")
    if which == "lock":
        return streamed_lock_from_pb(message.lock)
    if which == "role":
        return role_from_pb(message.role)
    if which == "cluster_auth_preference":
        return cap_from_pb(message.cluster_auth_preference)
    raise ValidationError("resource carries no lock, role or cluster auth preference")


def event_to_pb(event: Event, packed: bool = False) -> watch_pb.WatchEvent:
    """The event; `packed`: a lock it puts in the lock's packed form when it has one."""
    message = watch_pb.WatchEvent(
        revision=event.revision,
        type=EVENT_TYPE_TO_PB[event.type],
        kind=KIND_TO_PB[event.kind],
        name=event.name,
        commit_time=timestamp_to_pb(event.time),
    )
    resource = event.resource
    if resource is None:
        return message
    packed_lock = packed_lock_of(resource) if packed else None
    if packed_lock is not None:
        message.packed_lock = packed_lock
    else:
        message.resource.CopyFrom(resource_to_pb(unpacked(resource)))
    return message


def packed_lock_of(resource: StreamedResource) -> bytes | None:
    """The packed form of a lock (lockd.domain.packed_form); None for any other
    resource and for a lock that has none."""
    if isinstance(resource, PackedLock):
        return resource.name.encode() + b"\x00" + resource.record
    return packed_form(resource) if isinstance(resource, Lock) else None


def event_from_pb(message: watch_pb.WatchEvent) -> Event:
    event_type = EVENT_TYPE_FROM_PB.get(message.type)
    kind = KIND_FROM_PB.get(message.kind)
    if event_type is None or kind is None:
        raise ValidationError(f"event {message.revision} has an unknown type or kind")
    body = message.WhichOneof("body")
    resource: StreamedResource | None = None
    if body == "packed_lock":
        if kind is not Kind.LOCK:
            raise ValidationError(
                f"event {message.revision} carries a packed lock for a {kind.value}"
            )
        resource = from_packed_form(message.packed_lock)
    elif body == "resource":
        resource = resource_from_pb(message.resource)
    return Event(
        message.revision,
        event_type,
        kind,
        message.name,
        resource,
        # An unset commit_time reads as the default Timestamp: 0, the Event's "unknown".
        _micros(message.commit_time, "commit_time"),
    )


def events_from_pb(events: Sequence[watch_pb.WatchEvent]) -> list[Event]:
    """The events of a batch, in order. Most batches carry one: it is read by index,
    without iterating the repeated field (a third of a microsecond less a batch)."""
    if len(events) == 1:
        return [event_from_pb(events[0])]
    return [event_from_pb(event) for event in events]


def snapshot_chunk_to_pb(
    resources: Sequence[ReplicatedResource], packed: bool = False
) -> watch_pb.SnapshotChunk:
    """A snapshot chunk; `packed`: its locks in their packed form where they have one."""
    chunk = watch_pb.SnapshotChunk()
    for resource in resources:
        packed_lock = packed_lock_of(resource) if packed else None
        if packed_lock is not None:
            chunk.packed_locks.append(packed_lock)
        else:
            chunk.resources.append(resource_to_pb(resource))
    return chunk


def snapshot_chunk_from_pb(
    chunk: watch_pb.SnapshotChunk,
) -> tuple[list[StreamedResource], PackedRun]:
    """The resources of a chunk, and its packed locks as a run (each validated)."""
    resources: list[StreamedResource] = [resource_from_pb(r) for r in chunk.resources]
    return resources, from_packed_forms(chunk.packed_locks)


def identity_to_pb(identity: Identity) -> pb.Identity:
    return pb.Identity(
        user=identity.user,
        roles=identity.roles,
        login=identity.login,
        mfa_device=identity.mfa_device,
        device=identity.device,
        access_requests=identity.access_requests,
        windows_desktop=identity.windows_desktop,
        bot_instance_id=identity.bot_instance_id,
        join_token=identity.join_token,
    )


def identity_from_pb(message: pb.Identity) -> Identity:
    """A sidecar's identity; server_id is never taken from the wire."""
    return Identity(
        user=message.user,
        roles=tuple(message.roles),
        login=message.login,
        mfa_device=message.mfa_device,
        device=message.device,
        access_requests=tuple(message.access_requests),
        windows_desktop=message.windows_desktop,
        bot_instance_id=message.bot_instance_id,
        join_token=message.join_token,
    )

"""Live sessions registered with a node agent, indexed so a lock finds them without a scan.

A session is registered by a sidecar over its channel (DESIGN §4). Its key is
`(owner, session_id)`: the owner is the sidecar's channel, and session ids are the
sidecar's own, unique within its channel. So two sidecars cannot collide, and when a
channel ends all of its sessions go at once (fate sharing) in time proportional to
their number.

The registry files each session under the `(field, value)` pairs of its identity as
served by the agent (SPEC §2), so the sessions a new lock hits are found from the lock's
target pairs alone. Pure: no IO, no clocks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from lockd.domain.errors import PreconditionError, ValidationError
from lockd.domain.identity import Identity
from lockd.domain.index import PairIndex
from lockd.domain.lock import TargetPair

# Bounds of what a sidecar may send for one session (checked before anything is kept).
MAX_SESSION_ID = 128
MAX_METADATA_VALUE = 256
MAX_IDENTITY_VALUE = 256
MAX_IDENTITY_LIST = 64


class SessionProtocol(StrEnum):
    """What kind of connection a session is (audit, metrics, termination messages)."""

    UNSPECIFIED = ""
    SSH = "ssh"
    DB = "db"
    APP = "app"
    DESKTOP = "desktop"
    K8S = "k8s"
    TCP = "tcp"


@dataclass(frozen=True, slots=True)
class SessionMetadata:
    """What an operator needs to know about a session besides who it is."""

    protocol: SessionProtocol = SessionProtocol.UNSPECIFIED
    remote_address: str = ""
    target_resource: str = ""
    started_at: datetime | None = None

    def validate(self) -> None:
        for name in ("remote_address", "target_resource"):
            if len(getattr(self, name)) > MAX_METADATA_VALUE:
                raise ValidationError(f"{name} is longer than {MAX_METADATA_VALUE} characters")


NO_METADATA = SessionMetadata()
SessionKey = tuple[str, str]  # (owner, session_id)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A registered session: its identity as served by this agent, and its metadata."""

    owner: str
    session_id: str
    identity: Identity
    metadata: SessionMetadata

    @property
    def key(self) -> SessionKey:
        return (self.owner, self.session_id)


def validate_registration(session_id: str, identity: Identity, metadata: SessionMetadata) -> None:
    """Refuse what no real session has, so one registration cannot bloat the index."""
    if not session_id:
        raise ValidationError("a session needs a session_id")
    if len(session_id) > MAX_SESSION_ID:
        raise ValidationError(f"session_id is longer than {MAX_SESSION_ID} characters")
    metadata.validate()
    for name in ("roles", "access_requests"):
        values: tuple[str, ...] = getattr(identity, name)
        if len(values) > MAX_IDENTITY_LIST:
            raise ValidationError(f"identity has more than {MAX_IDENTITY_LIST} {name}")
        if any(len(value) > MAX_IDENTITY_VALUE for value in values):
            raise ValidationError(f"identity {name} longer than {MAX_IDENTITY_VALUE} characters")
    for name in (
        "user",
        "login",
        "mfa_device",
        "device",
        "windows_desktop",
        "bot_instance_id",
        "join_token",
    ):
        if len(getattr(identity, name)) > MAX_IDENTITY_VALUE:
            raise ValidationError(f"identity {name} is longer than {MAX_IDENTITY_VALUE} characters")


class SessionRegistry:
    """Sessions by key, by owner, and filed under their query targets."""

    __slots__ = ("_index", "_owners", "_protocols")

    def __init__(self) -> None:
        self._index: PairIndex[SessionKey, SessionRecord] = PairIndex()
        self._owners: dict[str, dict[str, SessionRecord]] = {}
        self._protocols: Counter[SessionProtocol] = Counter()

    def add(self, record: SessionRecord, targets: tuple[TargetPair, ...] | None = None) -> None:
        """Register `record` (filed under `targets`, by default its identity's query
        targets); a live session's key is refused (PreconditionError)."""
        if record.key in self._index:
            raise PreconditionError(f'session "{record.session_id}" is already registered')
        pairs = record.identity.query_targets() if targets is None else targets
        self._index.put(record.key, pairs, record)
        self._owners.setdefault(record.owner, {})[record.session_id] = record
        self._protocols[record.metadata.protocol] += 1

    def remove(self, key: SessionKey) -> SessionRecord | None:
        record = self._index.remove(key)
        if record is None:
            return None
        owned = self._owners[record.owner]
        del owned[record.session_id]
        if not owned:
            del self._owners[record.owner]
        self._protocols[record.metadata.protocol] -= 1
        return record

    def remove_owner(self, owner: str) -> list[SessionRecord]:
        """Unregister every session of `owner` (its channel ended)."""
        records = list(self._owners.get(owner, {}).values())
        for record in records:
            self.remove(record.key)
        return records

    def hit_by(self, pairs: tuple[TargetPair, ...]) -> list[SessionRecord]:
        """The sessions a lock with these target pairs hits, in key order (stable output)."""
        keys = self._index.keys_hit_by(pairs)
        records = []
        for key in sorted(keys):
            record = self._index.get(key)
            if record is not None:
                records.append(record)
        return records

    def get(self, key: SessionKey) -> SessionRecord | None:
        return self._index.get(key)

    def owned_by(self, owner: str) -> int:
        return len(self._owners.get(owner, ()))

    def by_protocol(self) -> dict[SessionProtocol, int]:
        """Live sessions per protocol (every protocol listed, zeros included)."""
        return {protocol: self._protocols[protocol] for protocol in SessionProtocol}

    def __iter__(self) -> Iterator[SessionRecord]:
        return self._index.values()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

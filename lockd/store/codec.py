"""Rows ⇄ domain values for the durable stores (SQLite and PostgreSQL).

Resource bodies are the same JSON documents `lockctl get -o json` prints
(`lockd.domain.documents`), so there is one codec for resources, a row is readable by a
human with the sqlite3 shell, and a stored body can be fed to `lockctl create -f`.
Timestamps that the database compares or orders (lock `expires`, event `time`) are
integers: microseconds since the Unix epoch, UTC — exact, and ordered like the instants.
"""

from __future__ import annotations

import json

from lockd.domain.documents import decode_resource, encode_resource
from lockd.domain.errors import InvariantError, ValidationError
from lockd.domain.events import Event, EventType
from lockd.domain.lock import Lock
from lockd.domain.resources import Kind, ReplicatedResource, Resource, User
from lockd.domain.unix_micros import to_micros


def expires_micros(resource: ReplicatedResource) -> int | None:
    """The value of the indexed `expires` column: only locks expire."""
    if isinstance(resource, Lock) and resource.expires is not None:
        return to_micros(resource.expires)
    return None


def dump_resource(resource: Resource) -> str:
    """A resource as its compact JSON document."""
    return json.dumps(encode_resource(resource), ensure_ascii=False, separators=(",", ":"))


def load_resource(body: str) -> Resource:
    """Read a stored body back; a body that does not decode is corruption, not user error."""
    try:
        return decode_resource(json.loads(body))
    except (ValueError, ValidationError) as error:  # JSONDecodeError is a ValueError
        raise InvariantError(f"stored resource does not decode: {error}") from error


def load_replicated(body: str) -> ReplicatedResource:
    resource = load_resource(body)
    if isinstance(resource, User):
        raise InvariantError(f"stored replicated resource is a user: {resource.name!r}")
    return resource


def event_from_row(
    revision: int, event_type: str, kind: str, name: str, body: str | None, micros: int
) -> Event:
    """An event as the durable stores keep it: one row, body NULL for DELETE/EXPIRE."""
    resource = None if body is None else load_replicated(body)
    return Event(revision, EventType(event_type), Kind(kind), name, resource, micros)


def load_user(body: str) -> User:
    resource = load_resource(body)
    if not isinstance(resource, User):
        raise InvariantError(f"stored user is a {type(resource).__name__}")
    return resource

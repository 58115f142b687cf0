"""The last known view on disk, so best_effort keeps enforcing across an agent restart.

One JSON file in the data dir, written atomically (temporary file, fsync, rename) with a
SHA-256 checksum over its payload. On load, a file that is corrupt, truncated, of
another format, cluster or agent is ignored with a warning — never trusted partially.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockd.domain.documents import decode_resource, encode_resource
from lockd.domain.errors import ValidationError
from lockd.domain.events import ReplicatedState
from lockd.domain.lock_table import LockTable
from lockd.domain.resources import ClusterAuthPreference, ReplicatedResource, User
from lockd.durable_files import write_durably

FORMAT = "lockd-view/1"
VIEW_FILE_NAME = "view.json"


@dataclass(frozen=True, slots=True)
class ViewOwner:
    """Whose view a file holds: it is only loaded by the same cluster and agent."""

    cluster: str
    server_id: str


class ViewWriter:
    """Saves the view to one file: the canonical payload `_canonical` would give (the
    loader checks the same SHA-256), assembled one resource at a time.

    Locks are decoded and encoded one by one (an agent's LockTable holds them
    compactly), so a save never holds a second, decoded copy of 100k locks. Saves are
    rare — after a snapshot and when the journal is compacted (lockd.agent.journal).
    """

    def __init__(self, path: Path, owner: ViewOwner) -> None:
        self.path = path
        self.owner = owner

    def save(self, state: ReplicatedState) -> None:
        locks = state.locks
        encoded = [_canonical(encode_resource(state.cluster_auth_preference))]
        encoded.extend(_canonical(encode_resource(role)) for role in state.roles.values())
        encoded.extend(_canonical(encode_resource(locks[name])) for name in locks)
        # The canonical payload (keys sorted): cluster, epoch, resources, revision, server_id.
        opening = b"".join(
            (
                b'{"cluster":',
                _canonical(self.owner.cluster),
                b',"epoch":',
                _canonical(state.epoch),
                b',"resources":[',
            )
        )
        closing = b"".join(
            (
                b'],"revision":',
                _canonical(state.revision),
                b',"server_id":',
                _canonical(self.owner.server_id),
                b"}",
            )
        )
        # Hashed piece by piece and joined once: the file is the only full-size copy.
        body = [opening]
        for index, piece in enumerate(encoded):
            if index:
                body.append(b",")
            body.append(piece)
        body.append(closing)
        digest = hashlib.sha256()
        for piece in body:
            digest.update(piece)
        header = b'{"format":' + _canonical(FORMAT) + b',"sha256":"'
        header += digest.hexdigest().encode() + b'","view":'
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(self.path, b"".join((header, *body, b"}")))


def save_view(path: Path, owner: ViewOwner, state: ReplicatedState) -> None:
    ViewWriter(path, owner).save(state)


def read_if_present(path: Path) -> bytes | None:
    """The file's bytes; None when there is no file; ValidationError when it cannot be
    read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ValidationError(f"cannot read {path}: {error}") from None


def load_view(path: Path, owner: ViewOwner) -> ReplicatedState | None:
    """The saved state, or None when there is none. Raises ValidationError when the file
    exists but cannot be trusted (the caller logs it and starts empty)."""
    raw = read_if_present(path)
    if raw is None:
        return None
    try:
        return _parse(raw, path, owner)
    except ValidationError:
        raise
    # Whatever else a hostile or damaged file provokes (e.g. RecursionError from deeply
    # nested JSON) must not stop the agent from starting.
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
        raise ValidationError(f"{path} is not a readable view: {error!r}") from None


def _parse(raw: bytes, path: Path, owner: ViewOwner) -> ReplicatedState:
    try:
        document = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValidationError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValidationError(f"{path} is not a lockd view file ({FORMAT})")
    payload = document.get("view")
    if not isinstance(payload, dict):
        raise ValidationError(f"{path} has no view")
    if hashlib.sha256(_canonical(payload)).hexdigest() != document.get("sha256"):
        raise ValidationError(f"{path} fails its checksum")
    if payload.get("cluster") != owner.cluster or payload.get("server_id") != owner.server_id:
        raise ValidationError(
            f"{path} belongs to cluster {payload.get('cluster')!r} "
            f"agent {payload.get('server_id')!r}"
        )
    return _state(payload, path)


def _state(payload: dict[str, Any], path: Path) -> ReplicatedState:
    epoch, revision = payload.get("epoch"), payload.get("revision")
    resources = payload.get("resources")
    if not isinstance(epoch, str) or not isinstance(revision, int) or revision < 0:
        raise ValidationError(f"{path} has a bad epoch or revision")
    if not isinstance(resources, list):
        raise ValidationError(f"{path} has no resource list")
    kinds: set[type] = set()

    def replicated() -> Iterator[ReplicatedResource]:
        for item in resources:
            resource = decode_resource(item)
            if isinstance(resource, User):
                raise ValidationError(f"{path} holds users, which are not replicated")
            kinds.add(type(resource))
            yield resource

    # Straight into the agent's compact table, one resource at a time.
    state = ReplicatedState.from_resources(epoch, revision, replicated(), LockTable())
    if ClusterAuthPreference not in kinds:
        raise ValidationError(f"{path} has no cluster auth preference")
    return state


def _canonical(payload: object) -> bytes:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()

"""The cluster's locking modes, kept apart from the locks, so strict cannot fail open.

`<data_dir>/modes.json` holds the cluster auth preference's locking mode and the names
of the roles that ask for `lock: strict`, as of the last saved view — a few bytes,
written atomically whenever they change. When the view itself cannot be loaded (deleted,
truncated, damaged), the agent still knows which interactions are strict and locks them
out until it has synced, instead of taking the empty view's default (`best_effort`).

`startup_modes` decides what an agent assumes at start (docs/agent.md, "First start and
a lost view").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lockd.agent.persist import ViewOwner, read_if_present
from lockd.domain.errors import ValidationError
from lockd.domain.events import ReplicatedState
from lockd.domain.modes import LockingMode, parse_locking_mode
from lockd.domain.view import AssumedModes
from lockd.durable_files import write_durably

MODES_FILE_NAME = "modes.json"
MODES_FORMAT = "lockd-modes/1"
# What an agent that has synced before, but lost both its view and this file, assumes.
UNKNOWN_MODES = AssumedModes(LockingMode.STRICT)


def modes_of(state: ReplicatedState) -> AssumedModes:
    """The modes a view implies: its cluster default and its strict roles."""
    strict = frozenset(
        name for name, role in state.roles.items() if role.lock_mode is LockingMode.STRICT
    )
    return AssumedModes(state.cluster_auth_preference.locking_mode, strict)


def _body(owner: ViewOwner, modes: AssumedModes) -> dict[str, object]:
    return {
        "cluster": owner.cluster,
        "server_id": owner.server_id,
        "locking_mode": modes.cluster.value,
        "strict_roles": sorted(modes.strict_roles),
    }


def _digest(body: dict[str, object]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def save_modes(path: Path, owner: ViewOwner, modes: AssumedModes) -> None:
    """Write the file atomically (temporary file, fsync, rename, directory fsync)."""
    body = _body(owner, modes)
    document = {"format": MODES_FORMAT, "modes": body, "sha256": _digest(body)}
    write_durably(path, json.dumps(document, sort_keys=True).encode() + b"\n")


def load_modes(path: Path, owner: ViewOwner) -> AssumedModes | None:
    """The saved modes; None when there is no file. ValidationError when there is one
    that cannot be trusted."""
    raw = read_if_present(path)
    if raw is None:
        return None
    try:
        document = json.loads(raw)
        body = document["modes"]
        if document["format"] != MODES_FORMAT or document["sha256"] != _digest(body):
            raise ValidationError(f"{path} is not an intact {MODES_FORMAT} file")
        if body["cluster"] != owner.cluster or body["server_id"] != owner.server_id:
            raise ValidationError(f"{path} belongs to another cluster or agent")
        roles = body["strict_roles"]
        if not isinstance(roles, list) or not all(isinstance(name, str) for name in roles):
            raise ValidationError(f"{path} has a bad role list")
        return AssumedModes(parse_locking_mode(body["locking_mode"]), frozenset(roles))
    except ValidationError:
        raise
    except (ValueError, TypeError, KeyError) as error:
        raise ValidationError(f"{path} is not a readable modes file: {error!r}") from None


def startup_modes(
    view_loaded: bool, synced_before: bool, saved: AssumedModes | None
) -> AssumedModes | None:
    """What to assume about the cluster's modes until the first snapshot.

    A loaded view carries its own modes (None: nothing to assume). Without one, the
    saved modes file says them; an agent that synced before but has neither assumes
    strict — it must not take the weaker mode it cannot know. A first start (nothing
    on disk) assumes nothing: `agent_service.locking_mode` is then the only floor.
    """
    if view_loaded:
        return None
    if saved is not None:
        return saved
    return UNKNOWN_MODES if synced_before else None

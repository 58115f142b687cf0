"""Preset roles (issue 15, item 13) and the seed page's example documents."""

from __future__ import annotations

from pathlib import Path

from lockd.document_text import parse_documents
from lockd.domain.errors import AccessDeniedError
from lockd.domain.presets import PRESET_ROLES
from lockd.domain.rbac import Caller, authorize
from lockd.domain.resources import ClusterAuthPreference, Kind, Role, Verb

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def _can(role: Role, resource: Kind, verb: Verb) -> bool:
    try:
        authorize(Caller.user("u", (role.name,)), {role.name: role}, resource, (verb,))
    except AccessDeniedError:
        return False
    return True


def test_the_presets_grant_what_teleports_presets_grant() -> None:
    """access: nothing on lockd; editor: everything; auditor: list and read only;
    locksmith: every verb on locks, nothing else."""
    presets = {role.name: role for role in PRESET_ROLES}
    assert set(presets) == {"access", "editor", "auditor", "locksmith"}
    for kind in (Kind.LOCK, Kind.ROLE, Kind.USER, Kind.TOKEN, Kind.CLUSTER_AUTH_PREFERENCE):
        for verb in Verb:
            assert not _can(presets["access"], kind, verb)
            assert _can(presets["editor"], kind, verb)
            assert _can(presets["auditor"], kind, verb) is (verb in (Verb.LIST, Verb.READ))
            assert _can(presets["locksmith"], kind, verb) is (kind is Kind.LOCK)
    for role in PRESET_ROLES:
        role.validate()


def test_the_shipped_locksmith_example_is_the_locksmith_preset() -> None:
    """deploy/examples/locksmith.yaml (the seed page's document) reads back as the preset."""
    path = EXAMPLES / "locksmith.yaml"
    [role] = parse_documents(path.read_text(encoding="utf-8"), str(path))
    assert role == next(preset for preset in PRESET_ROLES if preset.name == "locksmith")


def test_the_shipped_cap_example_is_the_seed_pages_cap() -> None:
    """deploy/examples/cap.yaml sets the cluster-wide locking mode to best_effort."""
    path = EXAMPLES / "cap.yaml"
    assert parse_documents(path.read_text(encoding="utf-8"), str(path)) == [ClusterAuthPreference()]

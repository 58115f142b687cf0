"""The resource documents shipped in deploy/examples (the seed page's cap.yaml and
locksmith.yaml) are what `lockctl create -f` accepts, and say what the seed page says."""

from __future__ import annotations

from lockd.document_text import parse_documents
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ClusterAuthPreference, Role
from tests.deploy.tools import DEPLOY


def test_cap_example_sets_the_cluster_locking_mode() -> None:
    """cap.yaml parses as one cluster auth preference with the seed page's best_effort."""
    path = DEPLOY / "examples" / "cap.yaml"
    (cap,) = parse_documents(path.read_text(), str(path))
    assert isinstance(cap, ClusterAuthPreference)
    assert cap.locking_mode is LockingMode.BEST_EFFORT


def test_locksmith_example_grants_every_verb_on_locks() -> None:
    """locksmith.yaml parses as the seed page's role: list, create, read, update, delete."""
    path = DEPLOY / "examples" / "locksmith.yaml"
    (role,) = parse_documents(path.read_text(), str(path))
    assert isinstance(role, Role)
    assert role.name == "locksmith"
    assert role.deny == ()
    (rule,) = role.allow
    assert set(rule.resources) == {"lock"}
    assert set(rule.verbs) == {"list", "create", "read", "update", "delete"}

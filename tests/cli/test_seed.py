"""Every `tctl` example of the Teleport locking page, typed as `lockctl`, end to end.

A real `lockd auth` subprocess, a real `lockctl` subprocess per command; outputs are
compared byte for byte where the page (or SPEC §7) gives them.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.helpers import AuthServer, lockctl

pytestmark = pytest.mark.slow

CREATED = re.compile(r'Created a lock with name "([0-9a-f-]{36})"\.\n')


def created_name(stdout: str) -> str:
    match = CREATED.fullmatch(stdout)
    assert match, stdout
    name = match.group(1)
    assert uuid.UUID(name).version == 4
    return name


def get_lock(server: AuthServer, name: str) -> dict[str, object]:
    result = lockctl(server, "get", f"lock/{name}", "--format", "json")
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    return document


SEED_LOCKS = [
    (
        ["--user=foo@example.com", "--message=Suspicious activity.", "--ttl=10h"],
        {"user": "foo@example.com"},
        "Suspicious activity.",
        timedelta(hours=10),
    ),
    (
        [
            "--role=contractor",
            "--message=All contractor access is disabled for 10h.",
            "--ttl=10h",
        ],
        {"role": "contractor"},
        "All contractor access is disabled for 10h.",
        timedelta(hours=10),
    ),
    (
        [
            "--device",
            "9cdfc0ad-64b7-4d9c-9342-50e97f418ba0",
            "--message=Compromised device",
            "--ttl=48h",
        ],
        {"device": "9cdfc0ad-64b7-4d9c-9342-50e97f418ba0"},
        "Compromised device",
        timedelta(hours=48),
    ),
    (
        [
            "--mfa-device=d6c06a18-e147-4232-9dfe-6f83a28d5850",
            "--message=All contractor access is disabled for 10h.",
            "--ttl=10h",
        ],
        {"mfa_device": "d6c06a18-e147-4232-9dfe-6f83a28d5850"},
        "All contractor access is disabled for 10h.",
        timedelta(hours=10),
    ),
    (
        [
            "--server-id=363256df-f78a-4d99-803c-bae19da9ede4",
            "--message=The server running the Kubernetes Service and Database Service is under"
            " investigation.",
            "--ttl=10h",
        ],
        {"server_id": "363256df-f78a-4d99-803c-bae19da9ede4"},
        "The server running the Kubernetes Service and Database Service is under investigation.",
        timedelta(hours=10),
    ),
    (
        ["--windows-desktop=WIN-FMPFM5UF1SS-teleport-example-com", "--ttl=10h"],
        {"windows_desktop": "WIN-FMPFM5UF1SS-teleport-example-com"},
        None,
        timedelta(hours=10),
    ),
    (
        ["--access-request=261e80c5-357b-4c43-9b67-40a6bc4c6e4d", "--ttl=24h"],
        {"access_request": "261e80c5-357b-4c43-9b67-40a6bc4c6e4d"},
        None,
        timedelta(hours=24),
    ),
    (
        ["--user=foo@example.com", "--message=Please come back tomorrow.", "--ttl=24h"],
        {"user": "foo@example.com"},
        "Please come back tomorrow.",
        timedelta(hours=24),
    ),
]


@pytest.mark.parametrize(
    ("flags", "target", "message", "ttl"),
    SEED_LOCKS,
    ids=[str(next(iter(target))) + f"-{i}" for i, (_, target, _, _) in enumerate(SEED_LOCKS)],
)
def test_seed_lock_examples(
    server: AuthServer,
    flags: list[str],
    target: dict[str, str],
    message: str | None,
    ttl: timedelta,
) -> None:
    """Every `tctl lock` example of the seed page creates the lock it describes, with its target,
    message and expiry."""
    before = datetime.now(UTC)
    result = lockctl(server, "lock", *flags)
    after = datetime.now(UTC)
    assert (result.returncode, result.stderr) == (0, "")
    name = created_name(result.stdout)

    document = get_lock(server, name)
    spec = document["spec"]
    assert isinstance(spec, dict)
    assert document["metadata"] == {"name": name}
    assert spec["target"] == target
    assert spec.get("message") == message
    assert spec["created_by"] == "Admin"
    expires = datetime.fromisoformat(spec["expires"])
    assert before + ttl - timedelta(seconds=1) <= expires <= after + ttl + timedelta(seconds=1)
    assert expires.microsecond == 0  # rounded up to a whole second


def test_lock_without_ttl_never_expires(server: AuthServer) -> None:
    """A lock created without --ttl or --expires has no expiry."""
    name = created_name(lockctl(server, "lock", "--login=root").stdout)
    spec = get_lock(server, name)["spec"]
    assert isinstance(spec, dict)
    assert "expires" not in spec


def test_create_locksmith_role_and_assign_it(server: AuthServer, tmp_path: Path) -> None:
    """The seed page's locksmith role can be created from YAML and assigned to a user who may then
    lock."""
    locksmith = tmp_path / "locksmith.yaml"
    locksmith.write_text(
        "kind: role\n"
        "version: v5\n"
        "metadata:\n"
        "  name: locksmith\n"
        "spec:\n"
        "  allow:\n"
        "    rules:\n"
        "    - resources: [lock]\n"
        "      verbs: [list, create, read, update, delete]\n"
    )
    result = lockctl(server, "create", "-f", str(locksmith))
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "role 'locksmith' has been created\n",
        "",
    )

    assert lockctl(server, "create", "-f", str(locksmith)).stderr == (
        'ERROR: nothing was applied: role "locksmith" already exists (use --force to update '
        "existing resources)\n"
    )
    assert lockctl(server, "create", "-f", str(locksmith), "--force").stdout == (
        "role 'locksmith' has been updated\n"
    )

    for role in ("access", "editor"):
        role_file = tmp_path / f"{role}.yaml"
        role_file.write_text(f"kind: role\nversion: v5\nmetadata:\n  name: {role}\n")
        assert lockctl(server, "create", "-f", str(role_file)).returncode == 0
    added = lockctl(server, "users", "add", "email@example.com", "--roles=access,editor")
    assert (added.returncode, added.stdout) == (0, 'User "email@example.com" has been created\n')

    # tctl users update $(...) --set-roles "${ROLES?},locksmith"
    roles = "access,editor"
    result = lockctl(
        server, "users", "update", "email@example.com", "--set-roles", f"{roles},locksmith"
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "User email@example.com has been updated:\n\tNew roles: access,editor,locksmith\n",
        "",
    )
    users = lockctl(server, "get", "users")
    assert users.stdout == (
        "kind: user\n"
        "version: v2\n"
        "metadata:\n"
        "  name: email@example.com\n"
        "spec:\n"
        "  roles:\n"
        "  - access\n"
        "  - editor\n"
        "  - locksmith\n"
    )


CAP_YAML = (
    "kind: cluster_auth_preference\n"
    "metadata:\n"
    "  name: cluster-auth-preference\n"
    "spec:\n"
    "  locking_mode: best_effort\n"
    "version: v2\n"
)


def test_cap_create_and_get(server: AuthServer, tmp_path: Path) -> None:
    """A cluster_auth_preference document sets the locking mode and `get cap` shows it back."""
    cap = tmp_path / "cap.yaml"
    cap.write_text(CAP_YAML.replace("best_effort", "strict"))
    result = lockctl(server, "create", "-f", str(cap))
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "cluster auth preference has been updated\n",
        "",
    )
    got = lockctl(server, "get", "cap")
    assert (got.returncode, got.stdout) == (
        0,
        "kind: cluster_auth_preference\n"
        "version: v2\n"
        "metadata:\n"
        "  name: cluster-auth-preference\n"
        "spec:\n"
        "  locking_mode: strict\n",
    )
    cap.write_text(CAP_YAML)
    assert lockctl(server, "create", "-f", str(cap)).stdout == (
        "cluster auth preference has been updated\n"
    )
    assert "locking_mode: best_effort\n" in lockctl(server, "get", "cap").stdout


def test_get_locks_and_rm(server: AuthServer, tmp_path: Path) -> None:
    """A lock document from the seed page is created, listed by `get locks`, and removed by `rm`."""
    lock = tmp_path / "lock.yaml"
    lock.write_text(
        "kind: lock\n"
        "version: v2\n"
        "metadata:\n"
        "  name: 24679348-baff-4987-a2cd-e820ab7f9d2b\n"
        "spec:\n"
        "  target:\n"
        "    user: foo@example.com\n"
        '  message: "Suspicious activity."\n'
        '  expires: "2101-08-14T22:27:00Z"\n'
    )
    created = lockctl(server, "create", "-f", str(lock))
    assert created.stdout == 'lock "24679348-baff-4987-a2cd-e820ab7f9d2b" has been created\n'

    listing = lockctl(server, "get", "locks")
    assert listing.returncode == 0
    assert re.fullmatch(
        "kind: lock\n"
        "version: v2\n"
        "metadata:\n"
        "  name: 24679348-baff-4987-a2cd-e820ab7f9d2b\n"
        "spec:\n"
        "  target:\n"
        "    user: foo@example.com\n"
        "  message: Suspicious activity.\n"
        "  expires: '2101-08-14T22:27:00Z'\n"
        r"  created_at: '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z'\n"
        "  created_by: Admin\n",
        listing.stdout,
    ), listing.stdout

    removed = lockctl(server, "rm", "locks/24679348-baff-4987-a2cd-e820ab7f9d2b")
    assert (removed.returncode, removed.stdout, removed.stderr) == (
        0,
        'lock "24679348-baff-4987-a2cd-e820ab7f9d2b" has been deleted\n',
        "",
    )
    assert lockctl(server, "get", "locks").stdout == ""
    again = lockctl(server, "rm", "lock/24679348-baff-4987-a2cd-e820ab7f9d2b")
    assert (again.returncode, again.stderr) == (
        1,
        'ERROR: lock "24679348-baff-4987-a2cd-e820ab7f9d2b" not found\n',
    )

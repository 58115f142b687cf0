"""`lockctl create -f` against a real `lockd auth` (issue 15, item 11): one strict YAML
loader, a user's roles must exist, and a file is applied all or nothing."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import AuthServer, lockctl

ROLE = "kind: role\nversion: v5\nmetadata:\n  name: {name}\n"
USER = "kind: user\nversion: v2\nmetadata:\n  name: {name}\nspec:\n  roles: [{roles}]\n"


def _names(server: AuthServer, kind: str) -> list[str]:
    listed = lockctl(server, "get", kind, "--format=json")
    assert listed.returncode == 0, listed.stderr
    return [line.split('"')[3] for line in listed.stdout.splitlines() if '"name":' in line]


def test_a_duplicate_key_in_a_document_is_refused(server: AuthServer, tmp_path: Path) -> None:
    """A key given twice (the config loader's rule) exits 2 and stores nothing."""
    path = tmp_path / "dup.yaml"
    path.write_text(ROLE.format(name="ops") + "metadata:\n  name: other\n", encoding="utf-8")
    result = lockctl(server, "create", "-f", str(path))
    assert result.returncode == 2
    assert "duplicate key 'metadata'" in result.stderr
    assert _names(server, "roles") == []


def test_a_user_whose_role_does_not_exist_is_refused(server: AuthServer, tmp_path: Path) -> None:
    """As `users add`: `role "ghost" not found`, exit 1, nothing applied."""
    path = tmp_path / "user.yaml"
    path.write_text(USER.format(name="alice", roles="ghost"), encoding="utf-8")
    result = lockctl(server, "create", "-f", str(path))
    assert result.returncode == 1
    assert result.stderr == 'ERROR: nothing was applied: role "ghost" not found\n'
    assert _names(server, "users") == []


def test_a_file_whose_third_document_exists_applies_nothing(
    server: AuthServer, tmp_path: Path
) -> None:
    """The review's case: without --force, a third document that already exists leaves
    the first two unapplied; the error names it. A role defined earlier in the same file
    counts for a user after it."""
    existing = tmp_path / "existing.yaml"
    existing.write_text(ROLE.format(name="ops"), encoding="utf-8")
    assert lockctl(server, "create", "-f", str(existing)).returncode == 0
    path = tmp_path / "three.yaml"
    documents = [
        ROLE.format(name="dev"),
        USER.format(name="bob", roles="dev"),
        ROLE.format(name="ops"),
    ]
    path.write_text("---\n".join(documents), encoding="utf-8")
    result = lockctl(server, "create", "-f", str(path))
    assert result.returncode == 1
    assert result.stderr == (
        'ERROR: nothing was applied: role "ops" already exists '
        "(use --force to update existing resources)\n"
    )
    assert result.stdout == ""
    assert _names(server, "roles") == ["ops"]
    assert _names(server, "users") == []
    forced = lockctl(server, "create", "-f", str(path), "--force")
    assert forced.returncode == 0, forced.stderr
    assert _names(server, "users") == ["bob"]

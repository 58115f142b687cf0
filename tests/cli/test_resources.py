"""`get`, `create -f`, `rm`, `users`: round trips, messages and exit codes, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.helpers import AuthServer, lockctl, write_config

pytestmark = pytest.mark.slow

NAME = "0d4e3e87-5c1c-4f4e-9f55-3f6a1d6f4b10"
LOCK_YAML = f"""\
kind: lock
version: v2
metadata:
  name: {NAME}
spec:
  target:
    user: alice
    server_id: 363256df-f78a-4d99-803c-bae19da9ede4
  message: "line one\\nline two"
  expires: "2101-01-02T03:04:05Z"
"""
FIXTURE = f"""\
kind: role
version: v5
metadata:
  name: locksmith
spec:
  allow:
    rules:
    - resources: [lock]
      verbs: [list, create, read, update, delete]
  options:
    lock: strict
---
kind: user
version: v2
metadata:
  name: alice
spec:
  roles: [locksmith]
---
{LOCK_YAML}---
kind: lock
version: v2
metadata:
  name: ffffffff-0000-4000-8000-000000000000
spec:
  target:
    login: root
"""


def without_created_at(documents: list[dict[str, object]]) -> list[dict[str, object]]:
    """The server stamps a lock's created_at on every write; compare the rest."""
    for document in documents:
        spec = document.get("spec")
        if document["kind"] == "lock" and isinstance(spec, dict):
            spec.pop("created_at", None)
    return documents


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_get_output_feeds_create_unchanged(server: AuthServer, fmt: str) -> None:
    """What `get` prints can be fed back to `create -f` and yields the same resources."""
    created = lockctl(server, "create", "-f", "-", stdin=FIXTURE)
    assert (created.returncode, created.stdout) == (
        0,
        "role 'locksmith' has been created\n"
        'user "alice" has been created\n'
        f'lock "{NAME}" has been created\n'
        'lock "ffffffff-0000-4000-8000-000000000000" has been created\n',
    )
    before = lockctl(server, "get", "all", "-o", fmt)
    assert before.returncode == 0

    again = lockctl(server, "create", "-f", "-", "--force", stdin=before.stdout)
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == (
        "cluster auth preference has been updated\n"
        "role 'locksmith' has been updated\n"
        'user "alice" has been updated\n'
        f'lock "{NAME}" has been updated\n'
        'lock "ffffffff-0000-4000-8000-000000000000" has been updated\n'
    )
    after = lockctl(server, "get", "all", "-o", fmt)
    load = json.loads if fmt == "json" else lambda text: list(yaml.safe_load_all(text))
    assert without_created_at(load(after.stdout)) == without_created_at(load(before.stdout))

    # Also per kind: `get locks` into `create -f - --force`.
    locks = lockctl(server, "get", "locks", "--format", fmt)
    relocked = lockctl(server, "create", "-f", "-", "--force", stdin=locks.stdout)
    assert relocked.stdout.count("has been updated\n") == 2


def test_create_existing_lock_needs_force(server: AuthServer) -> None:
    """create -f of an existing lock fails unless --force is given."""
    assert lockctl(server, "create", "-f", "-", stdin=LOCK_YAML).returncode == 0
    again = lockctl(server, "create", "-f", "-", stdin=LOCK_YAML)
    assert (again.returncode, again.stdout, again.stderr) == (
        1,
        "",
        f'ERROR: nothing was applied: lock "{NAME}" already exists (use --force to update '
        "existing resources)\n",
    )
    forced = lockctl(server, "create", "--force", "-f", "-", stdin=LOCK_YAML)
    assert forced.stdout == f'lock "{NAME}" has been updated\n'


def test_get_text_tables(server: AuthServer) -> None:
    """get --format=text prints tctl-shaped tables of locks, roles and users."""
    assert lockctl(server, "create", "-f", "-", stdin=FIXTURE).returncode == 0
    locks = lockctl(server, "get", "locks", "--format=text")
    target = 'User:"alice" ServerID:"363256df-f78a-4d99-803c-bae19da9ede4"'  # 60 columns
    assert locks.stdout == (
        "ID"
        + " " * 36
        + "Target"
        + " " * 56
        + "Message"
        + " " * 13
        + "Expires\n"
        + "-" * 36
        + "  "
        + "-" * 60
        + "  "
        + "-" * 18
        + "  "
        + "-" * 20
        + "\n"
        + f"{NAME}  {target}  line one\\nline two  2101-01-02T03:04:05Z\n"
        + 'ffffffff-0000-4000-8000-000000000000  Login:"root"'
        + " " * (48 + 2 + 18 + 2)
        + "never\n"
    )
    assert lockctl(server, "get", "users", "-o", "text").stdout == (
        "Name   Roles\n-----  ---------\nalice  locksmith\n"
    )
    assert lockctl(server, "get", "role/locksmith", "-o", "text").stdout == (
        "Name       Allow                                 Deny  Lock Mode\n"
        "---------  ------------------------------------  ----  ---------\n"
        "locksmith  lock: list,create,read,update,delete        strict\n"
    )
    assert lockctl(server, "get", "cap", "-o", "text").stdout == (
        "Name                     Locking Mode  Effective Mode\n"
        "-----------------------  ------------  --------------\n"
        "cluster-auth-preference  best_effort   best_effort\n"
    )
    assert (
        lockctl(server, "users", "ls").stdout == lockctl(server, "get", "users", "-o=text").stdout
    )


def test_get_single_json_is_an_object_and_list_is_an_array(server: AuthServer) -> None:
    """get -o json prints one resource as an object and a listing as an array."""
    assert lockctl(server, "create", "-f", "-", stdin=LOCK_YAML).returncode == 0
    one = json.loads(lockctl(server, "get", f"lock/{NAME}", "-o", "json").stdout)
    assert one["metadata"] == {"name": NAME}
    many = json.loads(lockctl(server, "get", "locks", "-o", "json").stdout)
    assert [document["metadata"]["name"] for document in many] == [NAME]
    assert lockctl(server, "get", "roles", "-o", "json").stdout == "[]\n"


def test_rm_role_and_user(server: AuthServer) -> None:
    """rm deletes users and roles by reference and confirms each deletion."""
    assert lockctl(server, "create", "-f", "-", stdin=FIXTURE).returncode == 0
    user = lockctl(server, "rm", "user/alice")
    assert (user.returncode, user.stdout) == (0, 'user "alice" has been deleted\n')
    role = lockctl(server, "rm", "role/locksmith")
    assert (role.returncode, role.stdout) == (0, 'role "locksmith" has been deleted\n')
    missing = lockctl(server, "get", "user/alice")
    assert (missing.returncode, missing.stderr) == (1, 'ERROR: user "alice" not found\n')


def test_users_add_errors(server: AuthServer) -> None:
    """users add refuses unknown roles and an empty role list with clear errors."""
    unknown = lockctl(server, "users", "add", "bob", "--roles=ghost")
    assert (unknown.returncode, unknown.stderr) == (1, 'ERROR: role "ghost" not found\n')
    empty = lockctl(server, "users", "add", "bob", "--roles=,")
    assert (empty.returncode, empty.stderr) == (
        2,
        "ERROR: --roles needs at least one role, e.g. --roles=access,locksmith\n",
    )
    missing = lockctl(server, "users", "update", "nobody", "--set-roles", "x")
    assert (missing.returncode, missing.stderr) == (1, 'ERROR: user "nobody" not found\n')
    assert lockctl(server, "get", "users").stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lock", "--message=x"], "at least one target field must be set"),
        (
            ["lock", "--user=a", "--ttl=1h", "--expires=2101-01-01T00:00:00Z"],
            "use only one of --expires and --ttl",
        ),
        (
            ["lock", "--user=a", "--ttl=10"],
            '--ttl: invalid duration "10": missing unit (use a number with a unit, '
            "e.g. 90s, 10h or 1h30m)",
        ),
        (["lock", "--user=a", "--ttl=0s"], '--ttl: "0s" must be longer than zero'),
        (
            ["lock", "--user=a", "--expires=2101-01-01T00:00:00"],
            '--expires: invalid timestamp "2101-01-01T00:00:00": use RFC3339 with a zone, '
            "e.g. 2021-08-14T22:27:00Z or 2021-08-14T22:27:00+02:00",
        ),
        (
            ["lock", "--user=a", "--expires=2001-01-01T00:00:00Z"],
            "--expires: 2001-01-01T00:00:00Z is not in the future",
        ),
        (["lock", "--user="], "--user must not be empty"),
        (
            ["lock", "--user=a", "--wait=soon"],
            '--wait: invalid duration "soon" (use a number with a unit, e.g. 90s, 10h or 1h30m)',
        ),
        (["unlock"], "at least one target field must be set"),
        (
            ["get", "foo/bar"],
            'unknown resource kind "foo" (supported: lock, role, user, cap '
            "(cluster_auth_preference), all)",
        ),
        (["rm", "lock/"], 'empty resource name in "lock/": use lock/<name>'),
        (["rm", "locks"], '"locks" names no single resource: use <kind>/<name>, e.g. lock/<name>'),
        (
            ["rm", "cap"],
            "the cluster auth preference cannot be removed; set its locking_mode with "
            "lockctl create -f cap.yaml",
        ),
        (["create"], "no file: use -f FILE (or -f - for stdin)"),
        (
            ["create", "-f", "/nonexistent.yaml"],
            "cannot read /nonexistent.yaml: No such file or directory",
        ),
        (
            ["--auth-server", "auth.example.com:3025", "get", "locks"],
            "--auth-server needs --identity FILE (an identity file: on the auth host, "
            "lockctl auth sign --user=NAME --out=FILE)",
        ),
        (
            ["get", "locks", "--identity", "/tmp/id.pem"],
            "--identity needs --auth-server HOST:PORT (the auth server's listen_addr)",
        ),
        (
            ["get", "locks", "--identity", "/tmp/id.pem", "--auth-server", "a:1"],
            "use either -c/--config (the admin socket, on the auth host) or --auth-server "
            "with --identity (remote), not both",
        ),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    server: AuthServer, args: list[str], message: str
) -> None:
    """Usage errors exit 2 with the message and change nothing on the server."""
    result = lockctl(server, *args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"ERROR: {message}\n")
    assert lockctl(server, "get", "locks").stdout == ""


def test_argparse_errors_use_the_same_shape(server: AuthServer) -> None:
    """Errors found by the argument parser print usage and then the same `ERROR:` line shape."""
    result = lockctl(server, "lock", "--user=a", "--user=b")
    assert result.returncode == 2
    assert result.stderr.endswith("ERROR: --user given more than once\n")
    assert result.stderr.startswith("usage: lockctl lock")
    bad_format = lockctl(server, "get", "locks", "--format=xml")
    assert bad_format.returncode == 2
    assert "ERROR: argument --format/-o: invalid choice: 'xml'" in bad_format.stderr


def test_bad_documents_are_refused_whole(server: AuthServer) -> None:
    """A file with one bad document is refused whole: nothing of it is applied."""
    bad = LOCK_YAML + "---\nkind: lock\nversion: v2\nmetadata: {name: x}\nspec:\n  target: {}\n"
    result = lockctl(server, "create", "-f", "-", stdin=bad)
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "ERROR: <stdin>: document 2: at least one target field must be set\n",
    )
    expired = LOCK_YAML.replace("2101-01-02T03:04:05Z", "2001-01-02T03:04:05Z")
    result = lockctl(server, "create", "-f", "-", stdin=expired)
    assert (result.returncode, result.stderr) == (
        2,
        f'ERROR: lock "{NAME}" expires 2001-01-02T03:04:05Z, which is not in the future\n',
    )
    unknown = lockctl(server, "create", "-f", "-", stdin="kind: lock\nversion: v2\nfoo: 1\n")
    assert (unknown.returncode, unknown.stderr) == (
        2,
        "ERROR: <stdin>: document 1: unknown key foo\n",
    )
    assert lockctl(server, "get", "locks").stdout == ""


def test_config_discovery(server: AuthServer, tmp_path: Path) -> None:
    """lockctl finds the config from LOCKD_CONFIG and from -c given after the command."""
    from_env = lockctl(None, "get", "locks", env={"LOCKD_CONFIG": str(server.config)})
    assert (from_env.returncode, from_env.stderr) == (0, "")
    after_command = lockctl(None, "get", "locks", "-c", str(server.config))
    assert (after_command.returncode, after_command.stderr) == (0, "")
    missing = lockctl(tmp_path / "nope.yaml", "get", "locks")
    assert (missing.returncode, missing.stderr) == (
        2,
        f"ERROR: {tmp_path / 'nope.yaml'}: config file not found (pass the auth server's "
        "config with -c FILE or $LOCKD_CONFIG)\n",
    )


def test_unreachable_server_exits_1(tmp_path: Path) -> None:
    """A config whose admin socket has no server exits 1 naming the socket."""
    config = write_config(tmp_path, 1)
    socket = tmp_path / "data" / "admin.sock"
    result = lockctl(config, "get", "locks")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"ERROR: cannot reach the auth server at {socket}: connect: No such file or "
        "directory (2) (is the auth server running? start it with: lockd auth --config FILE)\n",
    )


def test_help_explains_flags_with_examples() -> None:
    """lockctl --help and each command's --help explain the flags and show examples."""
    top = lockctl(None, "--help")
    assert top.returncode == 0
    assert "examples:\n  lockctl" in top.stdout
    for command in (
        ["lock"],
        ["unlock"],
        ["get"],
        ["rm"],
        ["create"],
        ["status"],
        ["users"],
        ["users", "add"],
        ["users", "update"],
        ["auth", "sign"],
        ["tokens", "add"],
    ):
        result = lockctl(None, *command, "--help")
        assert result.returncode == 0, command
        assert "examples:\n  lockctl " in result.stdout, command
    lock_help = lockctl(None, "lock", "--help").stdout
    for flag in ("--user", "--mfa-device", "--join-token", "--ttl", "--expires", "--wait"):
        assert flag in lock_help

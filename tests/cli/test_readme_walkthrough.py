"""The README's first steps on a fresh cluster (issue 15, item 13): a real `lockd auth`
(TLS, as the README's) and real `lockctl` runs, with the documents shipped in
deploy/examples."""

from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import lockctl, start_auth_server

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"


def test_the_readme_walkthrough_works_on_a_fresh_cluster(tmp_path: Path) -> None:
    """users add with the preset access role, auth sign, the shipped locksmith.yaml and
    cap.yaml, users update: each prints what the README shows."""
    server = start_auth_server(tmp_path, tls=True)
    try:
        steps = [
            (["users", "add", "alice", "--roles=access"], 'User "alice" has been created\n'),
            (
                ["auth", "sign", "--user=alice", f"--out={tmp_path / 'alice.pem'}"],
                'The identity for user "alice" (roles: access) is in',
            ),
            (
                ["create", "-f", str(EXAMPLES / "locksmith.yaml"), "--force"],
                "role 'locksmith' has been updated\n",
            ),
            (
                ["users", "update", "alice", "--set-roles", "access,locksmith"],
                "User alice has been updated:\n\tNew roles: access,locksmith\n",
            ),
            (
                ["create", "-f", str(EXAMPLES / "cap.yaml")],
                "cluster auth preference has been updated\n",
            ),
        ]
        for argv, printed in steps:
            result = lockctl(server, *argv)
            assert result.returncode == 0, (argv, result.stderr)
            assert result.stdout.startswith(printed), (argv, result.stdout)
        roles = lockctl(server, "get", "roles", "--format=json").stdout
        for preset in ("access", "editor", "auditor", "locksmith"):
            assert f'"name": "{preset}"' in roles
    finally:
        server.stop()

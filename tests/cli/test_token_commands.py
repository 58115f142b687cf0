"""`lockctl tokens ls` and `tokens rm` against a real TLS `lockd auth` (issue 15, item 15)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import lockctl, start_auth_server


def test_tokens_are_listed_by_id_and_revoked_with_rm(tmp_path: Path) -> None:
    """tokens add makes one; tokens ls shows its id; tokens rm ID revokes it; an unknown
    id exits 1 and a bad one 2."""
    server = start_auth_server(tmp_path, tls=True)
    try:
        assert lockctl(server, "tokens", "add", "--type=agent").returncode == 0
        listed = lockctl(server, "tokens", "ls", "--format=json")
        assert listed.returncode == 0, listed.stderr
        [token] = json.loads(listed.stdout)
        assert (token["type"], token["created_by"], len(token["id"])) == ("agent", "Admin", 16)
        table = lockctl(server, "tokens", "ls").stdout
        assert table.splitlines()[0].split() == ["ID", "Type", "Expires", "Created", "by"]
        assert token["id"] in table
        removed = lockctl(server, "tokens", "rm", token["id"][:8])
        assert (removed.returncode, removed.stdout) == (
            0,
            f'token "{token["id"]}" has been deleted\n',
        )
        assert json.loads(lockctl(server, "tokens", "ls", "--format=json").stdout) == []
        again = lockctl(server, "tokens", "rm", token["id"])
        assert again.returncode == 1
        assert "no usable join token starts with" in again.stderr
        assert lockctl(server, "tokens", "rm", "xyz").returncode == 2
    finally:
        server.stop()

"""deploy/logrotate: logrotate itself reads the snippet (debug mode, nothing rotated)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.deploy.tools import DEPLOY, tool

SNIPPET = DEPLOY / "logrotate" / "lockd"


def test_logrotate_accepts_the_snippet(tmp_path: Path) -> None:
    """`logrotate --debug` parses it without an error, with the audit log in place."""
    logs = tmp_path / "var/log/lockd"
    logs.mkdir(parents=True)
    (logs / "audit.log").write_text('{"event":"lock.created"}\n')
    config = tmp_path / "lockd"
    config.write_text(SNIPPET.read_text().replace("/var/log/lockd", str(logs)))
    result = subprocess.run(
        [tool("logrotate"), "--debug", "--state", str(tmp_path / "state"), str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    assert f"considering log {logs / 'audit.log'}" in result.stderr

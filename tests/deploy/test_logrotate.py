"""deploy/logrotate: logrotate itself reads the snippet, and a real rotation makes the
real daemon reopen its audit log."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.lockd_process import running_lockd
from tests.deploy.tools import DEPLOY, run, tool
from tests.support import free_port, http_get

SNIPPET = DEPLOY / "logrotate" / "lockd"


def test_logrotate_accepts_the_snippet(tmp_path: Path) -> None:
    """`logrotate --debug` parses it without an error, with the audit log in place."""
    logs = tmp_path / "var/log/lockd"
    logs.mkdir(parents=True)
    (logs / "audit.log").write_text('{"event":"lock.created"}\n')
    config = tmp_path / "lockd"
    config.write_text(SNIPPET.read_text().replace("/var/log/lockd", str(logs)))
    result = run([tool("logrotate"), "--debug", "--state", str(tmp_path / "state"), str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in result.stderr.lower(), result.stderr
    assert f"considering log {logs / 'audit.log'}" in result.stderr


def test_a_forced_rotation_makes_the_daemon_reopen_its_audit_log(socket_dir: Path) -> None:
    """logrotate renames audit.log and signals the real `lockd auth` (SIGHUP, as the
    snippet's `systemctl reload` does): lockd creates a new audit.log (0600) at once."""
    logs = socket_dir / "log"
    audit = logs / "audit.log"
    metrics = free_port()
    config = socket_dir / "lockd.yaml"
    config.write_text(
        f"""
cluster_name: rotate.test
data_dir: {socket_dir / "data"}
audit: {{sink: {audit}}}
auth_service:
  enabled: true
  insecure: true
  listen_addr: 127.0.0.1:{free_port()}
  admin_socket: {socket_dir / "admin.sock"}
  metrics_addr: 127.0.0.1:{metrics}
"""
    )
    with running_lockd(["auth", "--config", str(config)], socket_dir / "auth.log") as daemon:
        daemon.wait_until(
            lambda: http_get(f"http://127.0.0.1:{metrics}/readyz")[0] == 200,
            "the auth server to be ready",
        )
        audit.write_text('{"event":"lock.created"}\n')  # something to rotate
        snippet = SNIPPET.read_text().replace("/var/log/lockd", str(logs))
        snippet = re.sub(
            r"postrotate\n.*?endscript",
            f"postrotate\n        kill -HUP {daemon.process.pid}\n    endscript",
            snippet,
            flags=re.DOTALL,
        )
        rotate = socket_dir / "lockd.logrotate"
        rotate.write_text(snippet)
        result = run(
            [tool("logrotate"), "--force", "--state", str(socket_dir / "state"), str(rotate)]
        )
        assert result.returncode == 0, result.stdout + result.stderr
        daemon.wait_until(audit.exists, "lockd to create audit.log again")
        assert (audit.stat().st_mode & 0o777) == 0o600
        assert (logs / "audit.log.1").read_text() == '{"event":"lock.created"}\n'
        assert daemon.stop() == 0, daemon.log()

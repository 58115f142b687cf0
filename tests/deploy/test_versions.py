"""One version: lockd/__init__.py is the source; the package metadata, both commands,
the deploy files' image tags and the CHANGELOG's latest entry all say the same."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess

from lockd import __version__
from tests.deploy.lockd_process import LOCKD
from tests.deploy.tools import DEPLOY, ROOT


def test_the_installed_metadata_takes_its_version_from_the_package() -> None:
    """pyproject's version is dynamic (lockd.__version__), so metadata agrees."""
    assert importlib.metadata.version("lockd") == __version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()


def test_lockd_and_lockctl_print_that_version() -> None:
    """`lockd --version` and `lockctl version`."""
    lockd = subprocess.run(
        [str(LOCKD), "--version"], capture_output=True, text=True, check=True, timeout=60
    )
    assert lockd.stdout.strip() == f"lockd {__version__}"
    lockctl = subprocess.run(
        [str(LOCKD.with_name("lockctl")), "version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert lockctl.stdout.startswith(f"lockctl {__version__} ")


def test_deploy_files_name_the_image_of_this_version() -> None:
    """Every `lockd:<tag>` in the manifests and the Dockerfile is this version."""
    texts = [path.read_text() for path in DEPLOY.glob("kubernetes/*.yaml")]
    texts.append((DEPLOY / "container" / "Dockerfile").read_text())
    tags = {tag for text in texts for tag in re.findall(r"\blockd:(\d[\w.]*)", text)}
    assert tags == {__version__}


def test_the_changelog_opens_with_this_version() -> None:
    """The first release heading of CHANGELOG.md is this version."""
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert next(heading for heading in headings if heading != "Unreleased") == __version__

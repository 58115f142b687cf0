"""checkov over the whole of deploy/ (Dockerfile and Kubernetes manifests), run once.

No check may fail; a check a file does not pass must be skipped in that file with a
written reason (a `checkov.io/skipN: CHECK=reason` annotation), and the reason must say
something.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.deploy.tools import DEPLOY, run, tool


@pytest.fixture(scope="module")
def reports() -> list[dict[str, Any]]:
    """checkov's JSON report per framework (one run: checkov takes seconds to start)."""
    result = run(
        [
            tool("checkov"),
            "-d",
            str(DEPLOY),
            "--skip-download",
            "-o",
            "json",
        ],
        timeout=300,
    )
    assert result.returncode in (0, 1), result.stderr
    parsed = json.loads(result.stdout)
    return parsed if isinstance(parsed, list) else [parsed]


def test_checkov_scans_the_dockerfile_and_the_manifests(reports: list[dict[str, Any]]) -> None:
    """Both kinds of file are found and parsed."""
    kinds = {report["check_type"]: report["summary"] for report in reports}
    assert {"dockerfile", "kubernetes"} <= set(kinds)
    for summary in kinds.values():
        assert summary["parsing_errors"] == 0
        assert summary["passed"] > 0


def test_no_checkov_check_fails(reports: list[dict[str, Any]]) -> None:
    """Zero failed checks in every framework."""
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for report in reports
        for check in report["results"].get("failed_checks", [])
    ]
    assert failed == []


def test_every_skipped_check_has_a_reason(reports: list[dict[str, Any]]) -> None:
    """A skip names why, in a sentence rather than a word."""
    for report in reports:
        for check in report["results"].get("skipped_checks", []):
            comment = check.get("check_result", {}).get("suppress_comment", "")
            assert len(comment.split()) >= 5, (check["check_id"], comment)

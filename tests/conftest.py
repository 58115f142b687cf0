"""Shared pytest configuration: hypothesis profiles for a loaded 2-core CI machine."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    max_examples=int(os.environ.get("LOCKD_HYPOTHESIS_EXAMPLES", "200")),
)
settings.load_profile("ci")

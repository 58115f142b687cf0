"""Time the agent tests step instead of wait for: one `SteppedClock` for every auth
server and agent a test's `Cluster` starts (tests.agent.helpers builds them on
`SystemClock()`), so expiry and staleness follow `advance()` rather than real seconds."""

from __future__ import annotations

import pytest

from lockd.testing import SteppedClock
from tests.agent import helpers


def share_stepped_clock(monkeypatch: pytest.MonkeyPatch) -> SteppedClock:
    """The clock the cluster's servers and agents run on from now on (this test only)."""
    clock = SteppedClock()
    monkeypatch.setattr(helpers, "SystemClock", lambda: clock)
    return clock

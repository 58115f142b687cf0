"""`lockctl lock --wait`'s loop of held status calls, on a scripted client and a fake
clock: what each call asks for, when it pauses, when it gives up."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import cast

import pytest

from lockd.cli.console import Console
from lockd.cli.exit_codes import OperationError
from lockd.cli.wait import POLL_INTERVAL, wait_for_agents
from lockd.client import AgentInfo, AuthClient, ClusterStatus
from lockd.client.auth_client import WAIT_HOLD

REVISION = 5


def agent(server_id: str, applied: int) -> AgentInfo:
    return AgentInfo(server_id, "", "synced", applied, 0, None, connected=True, epoch="e")


def status(*agents: AgentInfo, expired: bool = False) -> ClusterStatus:
    return ClusterStatus("c", "v", "", "sqlite", True, "e", REVISION, agents, hold_expired=expired)


class ScriptedServer:
    """Answers each status call with the next scripted status; a call whose answer says
    its hold expired takes its whole hold on the fake clock, like the server's."""

    def __init__(self, answers: list[ClusterStatus]) -> None:
        self.answers = answers
        self.calls: list[tuple[int, float]] = []
        self.now = 0.0
        self.sleeps: list[float] = []

    async def status(self, await_revision: int = 0, hold: float = 0.0) -> ClusterStatus:
        self.calls.append((await_revision, hold))
        answer = self.answers.pop(0)
        if answer.hold_expired:
            self.now += hold
        return answer

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def wait(self, within: timedelta) -> str:
        err = io.StringIO()
        await wait_for_agents(
            cast(AuthClient, self),
            Console(out=io.StringIO(), err=err),
            before=status(agent("a", REVISION - 1)),
            revision=REVISION,
            within=within,
            clock=lambda: self.now,
            sleep=self.sleep,
        )
        return err.getvalue()


async def test_a_wait_asks_again_at_once_after_a_hold_ran_out() -> None:
    """Each call carries the revision and a hold of WAIT_HOLD; after an answer whose hold ran
    out the next call follows at once, after one that came early with the agent still
    pending (an auth server that does not hold) the wait pauses first."""
    pending = agent("a", REVISION - 1)
    server = ScriptedServer(
        [status(pending, expired=True), status(pending), status(agent("a", REVISION))]
    )
    err = await server.wait(timedelta(seconds=30))
    assert server.calls == [(REVISION, WAIT_HOLD)] * 3
    assert server.sleeps == [POLL_INTERVAL]
    assert err.endswith("lock applied by 1/1 agents in 1.05s\n")


async def test_a_wait_never_holds_a_call_past_its_timeout() -> None:
    """With less than WAIT_HOLD left the call holds only what is left, and when it runs out
    the wait fails naming the pending agent."""
    server = ScriptedServer([status(agent("a", REVISION - 1), expired=True)])
    with pytest.raises(OperationError, match=r"1 of 1 agents did not confirm revision 5.*\ba \("):
        await server.wait(timedelta(seconds=0.4))
    assert server.calls == [(REVISION, 0.4)]
    assert server.sleeps == []

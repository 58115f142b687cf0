"""`lockctl lock --wait`: wait until every connected agent has applied a revision.

The auth server reports, per agent, the epoch and revision it last acknowledged. An
agent has applied the lock when it acknowledged, in the auth server's current epoch, a
revision at or past the lock's. An acknowledgement in another epoch (an agent still on
the history from before a restore) never counts, whatever its revision.

Who must confirm: every agent seen connected during the wait. An agent that drops off
before confirming stays pending (it is named, marked disconnected, if time runs out);
one that connects later must confirm too. With no agent connected at the first look,
there is nothing to wait for.

An agent the lock itself cuts off (a lock on its server_id) acknowledges what it applied
before its stream ends; the auth server then shows it as `locked` at that revision. It
has confirmed the lock, and the output says it was cut off by it.

Every status call carries the awaited revision, so the auth server asks the agents to
acknowledge it at once instead of at their next heartbeat-cadence ack, and a hold: the
server answers as soon as every connected agent has acknowledged it, or after `WAIT_HOLD`
(then the progress is shown and the wait asks again at once). Nothing is polled while
the acks come in, and the last one is seen when it arrives. A call answered without
running out its hold while an agent is still pending (one seen connected that has gone;
an auth server that does not hold) is followed by a pause, growing from `POLL_INTERVAL`
to `MAX_POLL_INTERVAL`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from lockd.cli.console import Console
from lockd.cli.exit_codes import OperationError
from lockd.client import AgentInfo, AuthClient, ClusterStatus
from lockd.client.auth_client import WAIT_HOLD
from lockd.domain.timeparse import format_duration

DEFAULT_WAIT = "30s"
POLL_INTERVAL = 0.05
MAX_POLL_INTERVAL = 0.5


LOCKED = "locked"


def has_applied(agent: AgentInfo, status: ClusterStatus, revision: int) -> bool:
    """The agent acknowledged `revision` (or later) in the server's current epoch."""
    return agent.epoch == status.epoch and agent.applied_revision >= revision


@dataclass
class WaitState:
    """What one wait has seen so far; `observe` folds in each status."""

    revision: int
    epoch: str = ""  # the server's, as of the last status
    seen: dict[str, AgentInfo] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)

    def observe(self, status: ClusterStatus) -> None:
        self.epoch = status.epoch
        for agent in status.agents:
            # Locked at or past the revision: it was connected after the lock was made
            # (it applied it), even if it was cut off before this wait first looked.
            applied = has_applied(agent, status, self.revision)
            cut_off = agent.state == LOCKED and applied
            if agent.connected or agent.server_id in self.seen or cut_off:
                self.seen[agent.server_id] = agent
                if applied:
                    self.confirmed.add(agent.server_id)

    def cut_off(self) -> list[str]:
        """Confirmed agents that were then locked out (by this lock, or a later one)."""
        return sorted(sid for sid in self.confirmed if self.seen[sid].state == LOCKED)

    def pending(self) -> list[AgentInfo]:
        return [agent for sid, agent in sorted(self.seen.items()) if sid not in self.confirmed]

    def describe_pending(self) -> str:
        return ", ".join(_describe(agent, self.epoch) for agent in self.pending())


def _describe(agent: AgentInfo, epoch: str) -> str:
    if agent.state == LOCKED:
        where = "locked out before it acknowledged"
    else:
        where = "disconnected" if not agent.connected else agent.state
    other = " of another epoch" if agent.epoch and agent.epoch != epoch else ""
    return f"{agent.server_id} (at revision {agent.applied_revision}{other}, {where})"


async def wait_for_agents(
    client: AuthClient,
    console: Console,
    *,
    before: ClusterStatus,
    revision: int,
    within: timedelta,
    started: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Return once every agent confirmed; OperationError naming the others on timeout.

    `before` is the status taken just before the lock was created: its connected agents
    must confirm too (one the lock cuts off at once may never show as connected again).
    `started` (a `clock()` reading taken just before the lock was created) is where the
    timeout and the reported time count from; default: now. `clock` and `sleep`: the
    time it reads and the pause it takes between calls answered early.
    """
    epoch = before.epoch
    state = WaitState(revision)
    state.observe(before)
    start = clock() if started is None else started
    interval = POLL_INTERVAL
    reported = -1
    while True:
        left = within.total_seconds() - (clock() - start)
        status = await client.status(await_revision=revision, hold=min(WAIT_HOLD, max(0.0, left)))
        if status.epoch != epoch:
            raise OperationError(
                f"the auth server's history changed (epoch {epoch} → {status.epoch}) while "
                "waiting; check the lock with lockctl get locks"
            )
        state.observe(status)
        elapsed = clock() - start
        total, done = len(state.seen), len(state.confirmed)
        if not state.seen:
            console.note("note: no agents are connected; nothing to wait for")
            return
        if done == total:
            console.note(f"lock applied by {done}/{total} agents in {elapsed:.2f}s")
            for server_id in state.cut_off():
                console.note(f"{server_id} applied the lock and was then cut off by a lock on it")
            return
        if elapsed >= within.total_seconds():
            raise OperationError(
                f"{total - done} of {total} agents did not confirm revision {revision} "
                f"within {format_duration(within)}: {state.describe_pending()}"
            )
        if done != reported:
            console.note(f"waiting: lock applied by {done}/{total} agents")
            reported = done
        if not status.hold_expired:
            await sleep(min(interval, max(0.0, within.total_seconds() - elapsed)))
            interval = min(interval * 1.5, MAX_POLL_INTERVAL)

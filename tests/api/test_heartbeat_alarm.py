"""The watch stream's heartbeat alarm (lockd.auth.hub.Alarm): one timer kept across
waits, never later than asked for, ending the wait it is attached to."""

from __future__ import annotations

import asyncio

from lockd.auth.hub import Alarm


async def test_a_later_time_keeps_the_sooner_timer_and_a_sooner_one_replaces_it() -> None:
    """Set for 0.05 s then 60 s it still rings at 0.05 s (the stream sets it again
    then); set for 60 s then 0 s it rings at once. Each ring ends the attached wait."""
    loop = asyncio.get_running_loop()
    alarm = Alarm()
    for first, second in ((0.05, 60.0), (60.0, 0.0)):
        waiter: asyncio.Future[None] = loop.create_future()
        alarm.waiter = waiter
        alarm.set(first)
        alarm.set(second)
        await asyncio.wait_for(waiter, timeout=5)
    alarm.cancel()


async def test_a_cancelled_alarm_ends_no_wait() -> None:
    """After cancel, the attached wait is left to the batch or the close that ends it."""
    loop = asyncio.get_running_loop()
    alarm = Alarm()
    waiter: asyncio.Future[None] = loop.create_future()
    alarm.waiter = waiter
    alarm.set(0.0)
    alarm.cancel()
    await asyncio.sleep(0.05)
    assert not waiter.done()

"""What an agent acknowledges and when: only what is saved, on demand, at heartbeat
cadence, before a locked stream ends — and large batches applied in slices.

Against the scripted WatchLocks server (tests.agent.fake_auth) over real gRPC, with the
real agent (AgentApp) and its real data dir.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from lockd.agent.journal import JOURNAL_FILE_NAME, ViewJournal
from lockd.agent.persist import VIEW_FILE_NAME, ViewOwner
from lockd.agent.runtime import AgentRuntime
from lockd.client.agent_watcher import APPLY_SLICE
from lockd.domain.events import Event
from lockd.domain.lock import Lock, LockTarget
from lockd.v1 import watch_service_pb2 as pb
from tests.agent.fake_auth import Connection, FakeFactory
from tests.agent.helpers import CLUSTER, Cluster
from tests.support import eventually

EPOCH = "ack-epoch"
QUIET = 3600.0  # a heartbeat interval so long that no cadence ack comes during a test


def put(revision: int, user: str) -> Event:
    return Event.put(revision, Lock(f"l-{revision}", LockTarget(user=user)), datetime.now(UTC))


class DiskAtAck(list[pb.WatchAck]):
    """The fake server's ack list; copies the agent's view files the moment each ack
    arrives, so a test can check what was on disk when the agent acknowledged."""

    def __init__(self, data_dir: Path, copies: Path) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.copies = copies

    def append(self, ack: pb.WatchAck) -> None:
        target = self.copies / str(len(self))
        target.mkdir(parents=True)
        for name in (VIEW_FILE_NAME, JOURNAL_FILE_NAME):
            source = self.data_dir / name
            if source.exists():
                shutil.copyfile(source, target / name)
        super().append(ack)


async def test_an_ack_never_names_a_revision_that_is_not_on_disk(
    cluster: Cluster, fake: FakeFactory, tmp_path: Path
) -> None:
    """Each ack's revision is already in the saved view (base + journal) when the ack
    reaches the server: after a crash the agent would enforce everything it acked."""
    data_dir = tmp_path / "agent"
    acks = DiskAtAck(data_dir, tmp_path / "at-ack")

    async def script(connection: Connection) -> None:
        connection.acks = acks
        await connection.snapshot(EPOCH, 1)
        await connection.heartbeat(EPOCH, 1, QUIET)
        for revision in range(2, 12):
            await connection.events(EPOCH, revision, revision, [put(revision, f"u{revision}")])
            await connection.ask_ack(EPOCH, revision)
        await connection.wait_for_ack(11)
        await asyncio.Event().wait()

    server = await fake([script])
    await cluster.start_agent(addresses=(server.address,), data_dir=data_dir, wait_synced=False)
    await (await server.wait_connections(1))[0].wait_for_ack(11)
    owner = ViewOwner(CLUSTER, "node-1")
    for index, ack in enumerate(list(acks)):
        recovered = await asyncio.to_thread(
            ViewJournal(tmp_path / "at-ack" / str(index), owner).recover
        )
        on_disk = recovered.state.revision if recovered.state is not None else 0
        assert on_disk >= ack.applied_revision, (index, ack.applied_revision, on_disk)


async def test_an_asked_revision_is_acked_at_once_and_an_unasked_one_is_not(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """Without an AckRequest an applied and saved batch waits for the heartbeat-cadence
    ack (here an hour away): none names it once it is on disk, when an agent acking every
    save would have sent one; an AckRequest gets its ack at once."""
    asked = asyncio.Event()

    async def script(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        await connection.heartbeat(EPOCH, 1, QUIET)
        await connection.events(EPOCH, 2, 2, [put(2, "alice")])
        await asked.wait()
        await connection.ask_ack(EPOCH, 2)
        await asyncio.Event().wait()

    server = await fake([script])
    agent = await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    await agent.wait_revision(2)
    connection = (await server.wait_connections(1))[0]
    saver = agent.app.runtime.saver
    await eventually(lambda: saver.saved == (EPOCH, 2), what="revision 2 saved")
    assert all(ack.applied_revision < 2 for ack in connection.acks)
    asked.set()
    await connection.wait_for_ack(2)


async def test_a_batch_that_asks_for_its_ack_is_acked_once_saved(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """An EventBatch with ack_requested (a CreateLock somebody waits for) is acked as
    soon as it is saved, with no AckRequest and the cadence ack an hour away."""

    async def script(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        await connection.heartbeat(EPOCH, 1, QUIET)
        await connection.events(EPOCH, 2, 3, [put(2, "alice"), put(3, "bob")], True)
        await asyncio.Event().wait()

    server = await fake([script])
    await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    connection = (await server.wait_connections(1))[0]
    await connection.wait_for_ack(3)


async def test_a_locked_agent_acks_the_lock_before_its_stream_ends(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """Reset(LOCKED) after the batch carrying a lock on the agent: the agent applies it,
    saves it, acknowledges it and closes its side, so the server can count it."""

    async def script(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        await connection.heartbeat(EPOCH, 1, QUIET)
        lock = Lock("l-node", LockTarget(server_id="node-1"), message="retired")
        await connection.events(EPOCH, 2, 2, [Event.put(2, lock, datetime.now(UTC))])
        await connection.reset(5.0, pb.RESET_REASON_LOCKED)
        await connection.wait_for_ack(2)

    server = await fake([script])
    await cluster.start_agent(addresses=(server.address,), wait_synced=False)
    connection = (await server.wait_connections(1))[0]
    await connection.wait_for_ack(2)


class SliceRecorder(AgentRuntime):
    """The real runtime, noting each call's size and how often the loop turned."""

    turns = 0
    calls: list[tuple[int, int]] = []  # noqa: RUF012 (one test uses it)

    def on_events(self, epoch: str, first: int, last: int, events: Sequence[Event]) -> None:
        SliceRecorder.calls.append((len(events), SliceRecorder.turns))
        super().on_events(epoch, first, last, events)


async def test_a_large_batch_is_applied_in_slices_with_the_loop_turning_between(
    cluster: Cluster, fake: FakeFactory
) -> None:
    """A batch of 2000 events is applied at most APPLY_SLICE events per loop turn, so
    the agent's socket is served while a burst is applied."""
    total = 2000

    async def script(connection: Connection) -> None:
        await connection.snapshot(EPOCH, 1)
        await connection.heartbeat(EPOCH, 1, QUIET)
        events = [put(revision, f"u{revision}") for revision in range(2, 2 + total)]
        await connection.events(EPOCH, 2, 1 + total, events)
        await asyncio.Event().wait()

    async def count_turns() -> None:
        while True:
            SliceRecorder.turns += 1
            await asyncio.sleep(0)

    SliceRecorder.calls = []
    ticker = asyncio.create_task(count_turns())
    try:
        server = await fake([script])
        agent = await cluster.start_agent(
            addresses=(server.address,), wait_synced=False, runtime_class=SliceRecorder
        )
        await agent.wait_revision(1 + total)
    finally:
        ticker.cancel()
    sizes = [size for size, _ in SliceRecorder.calls]
    assert sum(sizes) == total
    assert max(sizes) <= APPLY_SLICE
    turns = [turn for _, turn in SliceRecorder.calls]
    assert all(later > earlier for earlier, later in itertools.pairwise(turns))

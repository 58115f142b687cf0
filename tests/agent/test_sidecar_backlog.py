"""What waits in a sidecar channel's queues (lockd.agent.sidecar_channel): the backlog
bounds that end a channel nobody reads, and what an end keeps and drops."""

from __future__ import annotations

from lockd.agent.sidecar_channel import (
    FRAME_OVERHEAD,
    MAX_QUEUED_BYTES,
    MAX_VIEW_BYTES,
    EndReason,
    SidecarChannel,
    ViewSnapshot,
)
from lockd.api.session_channel_servicer import ProtoSidecarEncoder
from lockd.domain.errors import UnavailableError
from lockd.domain.lock import Lock, LockTarget
from lockd.v1 import agent_service_pb2 as pb
from lockd.v1 import watch_service_pb2 as watch_pb


def _channel() -> SidecarChannel:
    return SidecarChannel("channel-1", "test", True, ProtoSidecarEncoder())


async def _drain(channel: SidecarChannel, count: int | None = None) -> list[str]:
    """The kinds of the frames the writer sends: `count` of them, or all of an ended one."""
    kinds: list[str] = []
    frames = channel.frames()
    while count is None or len(kinds) < count:
        frame = await anext(frames, None)
        if frame is None:
            break
        kinds.append(pb.AgentMessage.FromString(frame).WhichOneof("message") or "")
    return kinds


def _freshness() -> bytes:
    return pb.AgentMessage(freshness=pb.ViewFreshness(revision=1)).SerializeToString()


def _terminated(session_id: str) -> bytes:
    message = pb.SessionsTerminated(session_ids=[session_id])
    return pb.AgentMessage(terminated=message).SerializeToString()


async def test_a_channel_nobody_reads_ends_at_the_backlog_bound() -> None:
    """Session messages waiting past MAX_QUEUED_BYTES (tiny ones counted with their
    overhead) end the channel as a slow consumer; the backlog is dropped and so is
    everything pushed after the end."""
    channel = _channel()
    frame = _terminated("s")
    fits = MAX_QUEUED_BYTES // (len(frame) + FRAME_OVERHEAD)
    for _ in range(fits):
        channel.push(frame)
    assert not channel.ended
    channel.push(frame)
    assert channel.end_reason is EndReason.SLOW_CONSUMER
    assert isinstance(channel.failure, UnavailableError)
    channel.push(frame)
    channel.push_view(_freshness())
    assert (channel.queued_messages, channel.queued_bytes) == (0, 0)
    assert await _drain(channel) == []


async def test_a_view_read_too_slowly_starts_over_from_a_snapshot() -> None:
    """View frames waiting past MAX_VIEW_BYTES are replaced by one snapshot of the
    current view; the channel and its session messages stay."""
    current = ViewSnapshot("e1", 7, [Lock("now", LockTarget(user="alice"))])
    channel = SidecarChannel("channel-1", "test", True, ProtoSidecarEncoder(), lambda: current)
    channel.push(_terminated("s1"))
    batch = pb.AgentMessage(events=watch_pb.EventBatch(epoch="e" * 4096)).SerializeToString()
    for _ in range(MAX_VIEW_BYTES // len(batch)):
        channel.push_view(batch)
    assert channel.queued_messages == 1 + MAX_VIEW_BYTES // len(batch)
    channel.push_view(batch)
    assert not channel.ended
    assert channel.queued_messages == 2
    kinds = ["terminated", "snapshot_begin", "snapshot_chunk", "snapshot_end"]
    assert await _drain(channel, 4) == kinds


async def test_a_clean_end_delivers_the_session_messages_queued_before_it() -> None:
    """The sidecar half-closed: the answers queued before it still go out, view frames
    do not."""
    channel = _channel()
    channel.push_view(_freshness())
    channel.push(_terminated("s1"))
    channel.end(reason=EndReason.CLOSED)
    assert channel.failure is None
    assert await _drain(channel) == ["terminated"]


async def test_a_new_snapshot_replaces_the_view_frames_still_waiting() -> None:
    """A stuck view channel holds at most one snapshot: a new one drops the queued view
    frames (the copy starts over from it); session messages stay and go first."""
    channel = _channel()
    old = ViewSnapshot("e1", 1, [Lock("old", LockTarget(user="alice"))])
    channel.push_view(old)
    channel.push_view(_freshness())
    channel.push(_terminated("s1"))
    channel.push_view(ViewSnapshot("e1", 2, [Lock("new", LockTarget(user="bob"))]))
    assert channel.queued_messages == 2
    assert channel.queued_bytes == len(_terminated("s1")) + FRAME_OVERHEAD
    frames = await _drain(channel, 4)
    assert frames == ["terminated", "snapshot_begin", "snapshot_chunk", "snapshot_end"]
    assert (channel.queued_messages, channel.queued_bytes) == (0, 0)

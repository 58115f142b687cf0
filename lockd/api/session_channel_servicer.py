"""SessionChannel over gRPC: the protobuf encoder of the sidecar hub and the stream handler.

Requests arrive as bytes and are parsed here, so a message that is not a SidecarMessage
gets a clear INVALID_ARGUMENT on that channel alone (and no traceback in the agent's
log). Responses leave as bytes the hub queued (identity serialiser), so an event batch
forwarded to several view channels is encoded once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as PbMessage

from lockd.agent.session_hub import FRESHNESS_INTERVAL, MAX_BATCH, MAX_MESSAGE_BYTES, SessionHub
from lockd.agent.sidecar_channel import (
    EndReason,
    Registration,
    RegistrationResult,
    SidecarChannel,
)
from lockd.api.handler import Context
from lockd.domain.errors import LockdError, UnavailableError, ValidationError
from lockd.domain.events import Event
from lockd.domain.identity import Identity
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ReplicatedResource
from lockd.domain.sessions import NO_METADATA, SessionMetadata
from lockd.domain.view import Decision, SyncState, TerminationCause
from lockd.v1 import agent_service_pb2 as pb
from lockd.v1 import watch_service_pb2 as watch_pb
from lockd.wire import convert
from lockd.wire.session_convert import (
    CAUSE_TO_PB,
    decision_to_pb,
    metadata_from_pb,
)
from lockd.wire.status_table import status_for

MAX_SIDECAR_NAME = 128
NO_IDENTITY = Identity()
T = TypeVar("T")


class ProtoSidecarEncoder:
    """The SidecarEncoder port, in lockd.v1 protobuf (AgentMessage bytes)."""

    def welcome(self, server_id: str, channel_id: str, locking_floor: LockingMode) -> bytes:
        welcome = pb.ChannelWelcome(
            server_id=server_id,
            channel_id=channel_id,
            locking_floor=convert.MODE_TO_PB[locking_floor],
            max_batch=MAX_BATCH,
            max_message_bytes=MAX_MESSAGE_BYTES,
            freshness_interval=convert.duration_to_pb(
                convert.timedelta_seconds(FRESHNESS_INTERVAL)
            ),
        )
        return pb.AgentMessage(welcome=welcome).SerializeToString()

    def registered(
        self, request_id: int, revision: int, results: Sequence[RegistrationResult]
    ) -> bytes:
        answer = pb.SessionsRegistered(request_id=request_id, revision=revision)
        add = answer.results.add
        decisions: dict[Decision, bytes] = {}  # each distinct decision encoded once
        for result in results:
            decision = result.decision
            if decision is None:
                add(session_id=result.session_id, error=result.error)
                continue
            encoded = decisions.get(decision)
            if encoded is None:
                encoded = decisions[decision] = decision_to_pb(decision).SerializeToString()
            add(session_id=result.session_id).decision.MergeFromString(encoded)
        return pb.AgentMessage(registered=answer).SerializeToString()

    def terminated(
        self,
        session_ids: Sequence[str],
        reason: str,
        lock_name: str,
        cause: TerminationCause,
        revision: int,
    ) -> bytes:
        message = pb.SessionsTerminated(
            session_ids=session_ids,
            reason=reason,
            lock_name=lock_name,
            cause=CAUSE_TO_PB[cause],
            revision=revision,
        )
        return pb.AgentMessage(terminated=message).SerializeToString()

    # The view frames carry the WatchLocks messages (same types, same meaning).

    def events(self, epoch: str, events: Sequence[Event]) -> bytes:
        batch = watch_pb.EventBatch(
            epoch=epoch,
            from_revision=events[0].revision,
            to_revision=events[-1].revision,
            events=[convert.event_to_pb(event) for event in events],
        )
        return pb.AgentMessage(events=batch).SerializeToString()

    def snapshot_begin(self, epoch: str, revision: int, count: int) -> bytes:
        begin = watch_pb.SnapshotBegin(epoch=epoch, revision=revision, count=count)
        return pb.AgentMessage(snapshot_begin=begin).SerializeToString()

    def snapshot_chunk(self, resources: Sequence[ReplicatedResource]) -> bytes:
        chunk = convert.snapshot_chunk_to_pb(resources)
        return pb.AgentMessage(snapshot_chunk=chunk).SerializeToString()

    def snapshot_end(self, epoch: str, revision: int, count: int) -> bytes:
        end = watch_pb.SnapshotEnd(epoch=epoch, revision=revision, count=count)
        return pb.AgentMessage(snapshot_end=end).SerializeToString()

    def freshness(self, state: SyncState, revision: int, reliable_for: float) -> bytes:
        message = pb.ViewFreshness(
            state=convert.SYNC_STATE_TO_PB[state],
            revision=revision,
            reliable_for=convert.duration_to_pb(convert.timedelta_seconds(reliable_for)),
        )
        return pb.AgentMessage(freshness=message).SerializeToString()


def _parse(payload: bytes) -> pb.SidecarMessage:
    try:
        return pb.SidecarMessage.FromString(payload)
    except DecodeError:
        raise ValidationError(
            f"could not decode a SidecarMessage ({len(payload)} bytes); this channel is closed"
        ) from None


def registrations_from_pb(message: pb.RegisterSessions) -> list[Registration]:
    """Each registration; one that cannot be converted carries the error (it then fails
    alone, and the rest of the batch is registered).

    The sessions of a batch mostly share their identity and metadata: each distinct one
    (by its bytes) is converted once, and the equal registrations share the result.
    """
    if len(message.sessions) > MAX_BATCH:
        raise ValidationError(
            f"RegisterSessions carries {len(message.sessions)} sessions; at most {MAX_BATCH} "
            "per message"
        )
    identities: dict[bytes, Identity | str] = {}
    metadatas: dict[bytes, SessionMetadata | str] = {}
    parsed: list[Registration] = []
    for session in message.sessions:
        identity = _converted(identities, session.identity, convert.identity_from_pb)
        metadata = _converted(metadatas, session.metadata, metadata_from_pb)
        if isinstance(identity, str) or isinstance(metadata, str):
            error = identity if isinstance(identity, str) else str(metadata)
            parsed.append(Registration(session.session_id, NO_IDENTITY, NO_METADATA, error))
        else:
            parsed.append(Registration(session.session_id, identity, metadata))
    return parsed


def _converted(seen: dict[bytes, T | str], message: PbMessage, read: Callable[[Any], T]) -> T | str:
    """`read(message)`, or the error it raised, once per distinct encoding of `message`."""
    key = message.SerializeToString()
    value = seen.get(key)
    if value is None:
        try:
            value = read(message)
        except LockdError as error:
            value = str(error)
        seen[key] = value
    return value


class SessionChannelHandler:
    """Serves SessionChannel: one `SidecarChannel` of the hub per stream."""

    def __init__(self, hub: SessionHub) -> None:
        self._hub = hub

    async def session_channel(self, requests: AsyncIterator[bytes], context: Context) -> None:
        try:
            first = await anext(aiter(requests), None)
            hello = None if first is None else _parse(first)
            if hello is None or hello.WhichOneof("message") != "hello":
                raise ValidationError("the first SidecarMessage must be a ChannelHello")
            if len(hello.hello.sidecar) > MAX_SIDECAR_NAME:
                raise ValidationError(
                    f"ChannelHello.sidecar is longer than {MAX_SIDECAR_NAME} characters"
                )
        except LockdError as error:
            await context.abort(*status_for(error))
            return
        hub = self._hub
        channel = hub.open_channel(hello.hello.sidecar or context.peer(), hello.hello.want_view)
        reader = asyncio.create_task(self._read(requests, channel))
        writer = asyncio.create_task(_write(channel, context))
        try:
            await channel.wait_ended()
        except asyncio.CancelledError:
            writer.cancel()  # the sidecar went away: the stream is dead
            raise
        finally:
            # However it ended, its sessions are unregistered now, before waiting.
            hub.close_channel(channel)
            reader.cancel()
            await _finish(reader)
            # Then the writer ends after the write in progress: it may wait for a
            # sidecar that stopped reading, with the backlog already dropped.
            await _finish(writer)
        if channel.failure is not None:
            await context.abort(*status_for(channel.failure))

    async def _read(self, requests: AsyncIterator[bytes], channel: SidecarChannel) -> None:
        hub = self._hub
        try:
            async for payload in requests:
                message = _parse(payload)
                kind = message.WhichOneof("message")
                if kind == "register":
                    registrations = registrations_from_pb(message.register)
                    hub.register(channel, message.register.request_id, registrations)
                elif kind == "unregister":
                    ids = message.unregister.session_ids
                    if len(ids) > MAX_BATCH:
                        raise ValidationError(
                            f"UnregisterSessions carries {len(ids)} ids; at most {MAX_BATCH}"
                        )
                    hub.unregister(channel, ids)
                elif kind == "hello":
                    raise ValidationError("ChannelHello may only be the first message")
                else:
                    raise ValidationError("a SidecarMessage with no message set")
        except LockdError as error:
            channel.end(error, EndReason.INVALID)
            return
        channel.end(reason=EndReason.CLOSED)  # the sidecar half-closed: done with every session


async def _write(channel: SidecarChannel, context: Context) -> None:
    try:
        async for frame in channel.frames():
            await context.write(frame)
    except Exception as error:  # the stream broke under the write: logged as the end's detail
        channel.end(UnavailableError(f"writing to the sidecar failed: {error!r}"), EndReason.GONE)


async def _finish(task: asyncio.Task[None]) -> None:
    """Wait for a task of this channel to stop; its cancellation is expected."""
    with contextlib.suppress(asyncio.CancelledError):
        await task

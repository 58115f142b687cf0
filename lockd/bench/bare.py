"""Bare grpc.aio servers: the transport floors lockd is compared with.

`BareFanOut` is a streaming server that does nothing but fan one pre-built frame out to
every stream — the same bytes an auth server sends for a one-lock event batch, with the
same server options — each time the coordinator says `publish`. `BareUnary` answers a
CheckAccess-shaped unary call on a Unix socket with a pre-built response, without
deserialising the request. `BareChannels` holds SessionChannel streams, allows every
registration and, when told, sends each channel one termination message carrying the ids
of its victim sessions. Each runs in its own
worker process, like the real servers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from lockd.api.watch_servicer import ProtoWatchEncoder
from lockd.bench.wire import Message
from lockd.domain.events import Event
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.modes import LockingMode
from lockd.domain.view import Decision
from lockd.runtime.grpc_servers import SERVER_OPTIONS
from lockd.v1 import agent_service_pb2 as agent_pb
from lockd.wire.session_convert import decision_to_pb

CHECK_ACCESS = "/lockd.v1.AgentService/CheckAccess"
VICTIM = "bench-victim"  # the user whose sessions the terminate scenario's locks hit
EPOCH = "0f8c2a1e-6b7d-4c55-9a0e-3b1d2c4e5f60"  # a UUID, as real epochs are


def probe_lock(index: int) -> Lock:
    """The lock the propagation scenario creates, round `index` (it hits nobody)."""
    return Lock(
        f"bench-{index:06d}",
        LockTarget(user=f"bench-victim-{index}"),
        message="bench propagation",
    )


def event_frame(index: int) -> bytes:
    """The WatchLocks frame an auth server sends lockd's agents (locks packed) for the
    `probe_lock(index)` event."""
    now = datetime.now(UTC)
    lock = replace(probe_lock(index), created_at=now, created_by="admin")
    return ProtoWatchEncoder().events(EPOCH, [Event.put(index + 1, lock, now)], packed=True)


def allowed_response() -> bytes:
    """What the agent answers to an allowed CheckAccess (best-effort mode)."""
    decision = decision_to_pb(Decision(True, LockingMode.BEST_EFFORT))
    return agent_pb.CheckAccessResponse(decision=decision).SerializeToString()


class BareFanOut:
    """Fan-out of pre-built frames to every stream (the WatchLocks transport floor)."""

    def __init__(self) -> None:
        self._frames: list[bytes] = []
        self._changed = asyncio.Event()
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
            self._watch
        )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("lockd.bench.Bare", {"Watch": handler}),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def _watch(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await anext(aiter(requests), None)  # the client's hello
        await context.write(b"")  # welcome: the stream is live
        sent = 0
        while True:
            while sent < len(self._frames):
                await context.write(self._frames[sent])
                sent += 1
            await self._changed.wait()

    def publish(self, index: int) -> None:
        self._frames.append(event_frame(index))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def handle(self, command: Message) -> Message:
        if command["cmd"] == "publish":
            self.publish(int(command["index"]))
            return {}
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        await self.server.stop(0)


class BareUnary:
    """A unary server answering CheckAccess with pre-built bytes (the unary floor)."""

    def __init__(self, socket: Path) -> None:
        self._response = allowed_response()
        self.server = grpc.aio.server()
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(
            self._check
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "lockd.v1.AgentService", {"CheckAccess": handler}
                ),
            )
        )
        self.server.add_insecure_port(f"unix:{socket}")

    async def _check(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return self._response

    async def handle(self, command: Message) -> Message:
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        await self.server.stop(0)


class _Channel:
    """One SessionChannel stream: its victims and the lock that keeps its writes one at a time.

    grpc.aio allows one outstanding write per call; a termination sent while a
    registration answer is still being written fails with TOO_MANY_OPERATIONS.
    """

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.context = context
        self.victims: list[str] = []
        self._writing = asyncio.Lock()

    async def write(self, payload: bytes) -> None:
        async with self._writing:
            await self.context.write(payload)


class BareChannels:
    """SessionChannel streams that only do the transport (the session floor): a welcome,
    every registration allowed, and on `terminate` one pre-built-shape message per
    channel carrying the ids of its victim sessions."""

    def __init__(self, socket: Path) -> None:
        welcome = agent_pb.ChannelWelcome(server_id="bare", channel_id="bare", max_batch=1000)
        self._welcome = agent_pb.AgentMessage(welcome=welcome).SerializeToString()
        self._allowed = decision_to_pb(Decision(True, LockingMode.BEST_EFFORT))
        self._channels: list[_Channel] = []
        self._reason = 'lock targeting User:"bench-victim"'
        self.server = grpc.aio.server()
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.stream_stream_rpc_method_handler(
            self._channel
        )
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "lockd.v1.AgentService", {"SessionChannel": handler}
                ),
            )
        )
        self.server.add_insecure_port(f"unix:{socket}")

    async def _channel(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        channel = _Channel(context)
        self._channels.append(channel)
        async for payload in requests:
            message = agent_pb.SidecarMessage.FromString(payload)
            if message.HasField("hello"):
                await channel.write(self._welcome)
            elif message.HasField("register"):
                batch = message.register
                results = []
                for session in batch.sessions:
                    results.append(
                        agent_pb.SessionResult(
                            session_id=session.session_id, decision=self._allowed
                        )
                    )
                    if session.identity.user == VICTIM:
                        channel.victims.append(session.session_id)
                answer = agent_pb.SessionsRegistered(request_id=batch.request_id, results=results)
                await channel.write(agent_pb.AgentMessage(registered=answer).SerializeToString())

    async def handle(self, command: Message) -> Message:
        if command["cmd"] == "terminate":
            arrived = time.monotonic()
            count = 0
            for channel in self._channels:
                if channel.victims:
                    ended = agent_pb.SessionsTerminated(
                        session_ids=channel.victims, reason=self._reason
                    )
                    count += len(channel.victims)
                    channel.victims.clear()
                    await channel.write(agent_pb.AgentMessage(terminated=ended).SerializeToString())
            return {"arrived": arrived, "count": count}
        raise ValueError(f"unknown command {command['cmd']!r}")

    async def stop(self) -> None:
        await self.server.stop(0)

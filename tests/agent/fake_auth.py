"""A scripted WatchLocks server, for protocol edges a correct auth server never produces.

Each connection runs the next script (the last one repeats): it sees the agent's Hello
and sends whatever the test wants — snapshots, batches with gaps, older state, Resets
with a chosen retry_after — over real gRPC, so the agent's real watch client reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from lockd.domain.events import Event
from lockd.domain.resources import ClusterAuthPreference, ReplicatedResource
from lockd.v1 import watch_service_pb2 as pb
from lockd.wire import convert

SERVICE = "lockd.v1.WatchService"


@dataclass
class Connection:
    """One WatchLocks stream as the fake server saw it."""

    hello: pb.WatchHello
    context: Any
    opened_at: float
    acks: list[pb.WatchAck] = field(default_factory=list)
    closed_at: float | None = None

    async def send(self, response: pb.WatchLocksResponse) -> None:
        await self.context.write(response)

    async def snapshot(
        self, epoch: str, revision: int, resources: Sequence[ReplicatedResource] = ()
    ) -> None:
        """Begin, one chunk, End — the preference first, as the real server does."""
        items = [ClusterAuthPreference(), *resources]
        count = len(items)
        await self.send(
            pb.WatchLocksResponse(
                snapshot_begin=pb.SnapshotBegin(epoch=epoch, revision=revision, count=count)
            )
        )
        chunk = pb.SnapshotChunk(resources=[convert.resource_to_pb(r) for r in items])
        await self.send(pb.WatchLocksResponse(snapshot_chunk=chunk))
        await self.send(
            pb.WatchLocksResponse(
                snapshot_end=pb.SnapshotEnd(epoch=epoch, revision=revision, count=count)
            )
        )

    async def events(
        self,
        epoch: str,
        first: int,
        last: int,
        events: Sequence[Event],
        ack_requested: bool = False,
    ) -> None:
        """An EventBatch claiming `first..last` (the events need not agree: gaps)."""
        batch = pb.EventBatch(
            epoch=epoch,
            from_revision=first,
            to_revision=last,
            events=[convert.event_to_pb(event) for event in events],
            ack_requested=ack_requested,
        )
        await self.send(pb.WatchLocksResponse(events=batch))

    async def heartbeat(self, epoch: str, revision: int, interval: float = 0.1) -> None:
        beat = pb.Heartbeat(
            epoch=epoch,
            revision=revision,
            server_time=convert.timestamp_to_pb(datetime.now(UTC)),
            store_healthy=True,
            interval=convert.duration_to_pb(timedelta(seconds=interval)),
        )
        await self.send(pb.WatchLocksResponse(heartbeat=beat))

    async def heartbeats_forever(self, epoch: str, revision: int, interval: float = 0.1) -> None:
        while True:
            await self.heartbeat(epoch, revision, interval)
            await asyncio.sleep(interval)

    async def reset(self, retry_after: float, reason: int = pb.RESET_REASON_OVERLOADED) -> None:
        message = pb.Reset(
            reason=reason,  # type: ignore[arg-type]
            retry_after=convert.duration_to_pb(timedelta(seconds=retry_after)),
            detail="scripted",
        )
        await self.send(pb.WatchLocksResponse(reset=message))

    async def ask_ack(self, epoch: str, revision: int) -> None:
        """An AckRequest: somebody waits for `revision`."""
        request = pb.AckRequest(epoch=epoch, revision=revision)
        await self.send(pb.WatchLocksResponse(ack_request=request))

    async def wait_for_ack(self, revision: int, within: float = 20.0) -> None:
        async with asyncio.timeout(within):
            while not any(ack.applied_revision >= revision for ack in self.acks):  # noqa: ASYNC110
                await asyncio.sleep(0.02)


Script = Callable[[Connection], Awaitable[None]]


class FakeWatchServer:
    """Serves WatchLocks on 127.0.0.1:0, running `scripts[i]` for the i-th connection."""

    def __init__(self, scripts: Sequence[Script]) -> None:
        self.scripts = list(scripts)
        self.connections: list[Connection] = []
        self.connected = asyncio.Condition()
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    SERVICE,
                    {
                        "WatchLocks": grpc.stream_stream_rpc_method_handler(
                            self._watch,
                            request_deserializer=pb.WatchLocksRequest.FromString,
                            response_serializer=pb.WatchLocksResponse.SerializeToString,
                        )
                    },
                ),
            )
        )
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(0)

    async def wait_connections(self, count: int, within: float = 20.0) -> list[Connection]:
        async with asyncio.timeout(within), self.connected:
            await self.connected.wait_for(lambda: len(self.connections) >= count)
        return self.connections

    async def _watch(self, requests: AsyncIterator[pb.WatchLocksRequest], context: Any) -> None:
        first = await anext(aiter(requests))
        connection = Connection(first.hello, context, time.monotonic())
        script = self.scripts[min(len(self.connections), len(self.scripts) - 1)]
        async with self.connected:
            self.connections.append(connection)
            self.connected.notify_all()
        reader = asyncio.create_task(self._read_acks(requests, connection))
        try:
            await script(connection)
        finally:
            connection.closed_at = time.monotonic()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    @staticmethod
    async def _read_acks(
        requests: AsyncIterator[pb.WatchLocksRequest], connection: Connection
    ) -> None:
        async for request in requests:
            if request.WhichOneof("message") == "ack":
                connection.acks.append(request.ack)


FakeFactory = Callable[[Sequence[Script]], Awaitable["FakeWatchServer"]]


async def hold_open(_connection: Connection) -> None:
    """A script that keeps the stream open and silent until the test ends."""
    await asyncio.Event().wait()

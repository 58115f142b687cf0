"""Relaying bytes both ways between a client and its upstream, in bounded memory.

Each direction reads at most `chunk` bytes, writes them and waits for the writer to drain
below its high-water mark before it reads again, so a side that stops reading stops the
other side's reads too (TCP back-pressure reaches the sender). With the readers' own
limit (the stream pauses its transport past twice its limit), what a connection holds is
bounded by a few times `buffer_bytes` whatever its peers do: `buffered_bytes()` reports
it. The relay ends on an EOF or error on either side, or when no byte has moved in
either direction for `idle_timeout`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from lockd.domain.errors import ValidationError
from lockd.proxy.pg_wire import MessageFramer

_log = structlog.get_logger("lockd.proxy")


class RelayEnd(StrEnum):
    CLIENT_CLOSED = "client_closed"
    UPSTREAM_CLOSED = "upstream_closed"
    IDLE = "idle"


@dataclass(slots=True)
class Stream:
    """One side of the relay: an asyncio reader and writer."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def buffered_bytes(self) -> int:
        """Bytes held for this side: read but not yet consumed, plus not yet sent."""
        # StreamReader has no public size; its buffer is a bytearray (CPython 3.11+).
        pending = len(getattr(self.reader, "_buffer", b""))
        transport = self.writer.transport
        return pending + (0 if transport.is_closing() else transport.get_write_buffer_size())

    async def close(self) -> None:
        """Close after flushing what is queued, for at most a second: a peer that stopped
        reading must not keep the socket (and its buffer) forever."""
        self.writer.close()
        try:
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()
        except TimeoutError:
            self.writer.transport.abort()
        except OSError:
            pass  # reset by the peer while closing: closed all the same


def bound_writes(stream: Stream, buffer_bytes: int) -> None:
    """Let `drain()` wait once `buffer_bytes` are queued for sending on this side."""
    stream.writer.transport.set_write_buffer_limits(high=buffer_bytes, low=buffer_bytes // 4)


@dataclass(slots=True)
class Counters:
    to_upstream: int = 0
    to_client: int = 0
    last_activity: float = field(default=0.0)


class Relay:
    """Relays until one side ends or the connection idles; `framer` follows the messages
    sent to the client (PostgreSQL), so the caller knows whether it may inject one."""

    def __init__(
        self,
        client: Stream,
        upstream: Stream,
        *,
        chunk: int,
        idle_timeout: float,
        framer: MessageFramer | None = None,
    ) -> None:
        self.client = client
        self.upstream = upstream
        self.framer = framer
        self.counters = Counters(last_activity=asyncio.get_running_loop().time())
        self._chunk = chunk
        self._idle_timeout = idle_timeout

    def buffered_bytes(self) -> int:
        return self.client.buffered_bytes() + self.upstream.buffered_bytes()

    async def run(self) -> RelayEnd:
        tasks = {
            asyncio.create_task(self._pump(self.client, self.upstream, to_client=False)),
            asyncio.create_task(self._pump(self.upstream, self.client, to_client=True)),
            asyncio.create_task(self._idle()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            return next(iter(done)).result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, source: Stream, sink: Stream, *, to_client: bool) -> RelayEnd:
        loop = asyncio.get_running_loop()
        counters, framer = self.counters, self.framer if to_client else None
        ended = RelayEnd.UPSTREAM_CLOSED if to_client else RelayEnd.CLIENT_CLOSED
        try:
            while data := await source.reader.read(self._chunk):
                counters.last_activity = loop.time()
                if framer is not None:
                    framer.feed(data)
                sink.writer.write(data)
                if to_client:
                    counters.to_client += len(data)
                else:
                    counters.to_upstream += len(data)
                await sink.writer.drain()
        except OSError:  # reset, broken pipe, TLS failure: that side is gone
            pass
        except ValidationError as error:  # the upstream broke the protocol's framing
            _log.warning("relay stopped: invalid upstream stream", error=str(error))
        return ended

    async def _idle(self) -> RelayEnd:
        loop = asyncio.get_running_loop()
        # A deadline re-armed from the last activity: one wake-up per idle period, where
        # an Event set by the pumps would cost one per chunk relayed.
        while (due := self.counters.last_activity + self._idle_timeout - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(due)
        return RelayEnd.IDLE

"""The control channel between the auth server and one of its watch workers.

One end of a socketpair each, created by the auth server and handed to the worker as an
inherited file descriptor; JSON objects, one per line. The auth server sends the
worker's spec first, then commit wake-ups, awaited revisions and the stop; the worker
sends `ready`, then what its agents did (connect, ack, disconnect...) and its audit
records. The channel is also the worker's lifeline: when the auth server dies however it
dies (SIGKILL included), the kernel closes its end and the worker reads the end of the
stream and stops (lockd.runtime.fanout_worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

Message = dict[str, Any]

# The spec carries the server's TLS key and certificates: a few KB; lines stay far below.
LINE_LIMIT = 1 << 20
# A peer that stopped reading while this much piled up is stuck: drop the channel.
MAX_BUFFERED = 16 << 20


class ChannelClosed(Exception):
    """The other end went away (or stopped reading)."""


class ControlChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def over(cls, sock: socket.socket) -> ControlChannel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
        return cls(reader, writer)

    def send(self, message: Message) -> None:
        """Queue one message; it leaves as soon as the socket takes it (never blocks)."""
        if self._writer.is_closing():
            raise ChannelClosed("the control channel is closed")
        if self._writer.transport.get_write_buffer_size() > MAX_BUFFERED:
            self._writer.close()
            raise ChannelClosed("the other end stopped reading the control channel")
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def receive(self) -> Message | None:
        """The next message; None once the other end closed its side."""
        try:
            line = await self._reader.readline()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            return None
        if not line:
            return None
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ValueError(f"control message is not an object: {line[:80]!r}")
        return message

    async def close(self) -> None:
        self._writer.close()
        # The other end may be gone already: nothing left to flush to.
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

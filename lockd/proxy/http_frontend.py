"""The client side of an `http` listener: the first request's head, and the proxy's answers.

An `http` listener is TLS with a cluster client certificate, as every listener, then
HTTP/1.1 to a web application. The proxy reads the head of the client's first request
(under the handshake timeout, at most `buffer_bytes`) before it asks the agent, so that
a refused identity gets an answer it can show: `403 Forbidden` with the lock's message
as the body (SPEC §10), `503` while the agent is unreachable, `502` when the upstream
is. An allowed connection is relayed byte for byte from that head on (keep-alive
requests, streamed responses and WebSocket upgrades included) and closed when a lock
ends its session: a response under way has no place for a message, and the client's
next connection is answered 403.
"""

from __future__ import annotations

import asyncio
import re

from lockd.domain.errors import ValidationError
from lockd.proxy.relay import Stream

HEAD_END = b"\r\n\r\n"
# METHOD SP request-target SP HTTP/1.x (RFC 9112 §3); HTTP/2 is not offered (no ALPN).
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ \S+ HTTP/1\.[01]")
REASONS = {403: "Forbidden", 502: "Bad Gateway", 503: "Service Unavailable"}


async def read_request_head(stream: Stream) -> bytes:
    """The first request's line and headers, up to and including the blank line."""
    try:
        head = await stream.reader.readuntil(HEAD_END)
    except asyncio.LimitOverrunError:
        raise ValidationError("the request head is larger than the listener's buffer") from None
    except asyncio.IncompleteReadError:
        raise ValidationError("the client closed before its request was complete") from None
    if not _REQUEST_LINE.fullmatch(head.split(b"\r\n", 1)[0]):
        raise ValidationError("the client did not send an HTTP/1.x request")
    return head


def response(status: int, text: str) -> bytes:
    """A whole plain-text response that ends the connection (the body is `text`)."""
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body

"""The part of the PostgreSQL wire protocol (v3) the proxy speaks: pure parsing and encoding.

A connection opens with a *startup packet* (int32 length including itself, int32 code):
`SSLRequest` (80877103), `GSSENCRequest` (80877104), `CancelRequest` (80877102, then the
cancel key: int32 process id and the secret, 4 bytes up to protocol 3.1, up to 256 from
3.2) or a `StartupMessage` (protocol 3.x, then `name\\0value\\0`… pairs and a final
`\\0`). After it, every message is a type byte and an int32 length that counts itself
but not the type.
`MessageFramer` follows those boundaries in a byte stream, so the proxy can inject an
`ErrorResponse` between two messages and never inside one.
No IO here: the async code in `pg_frontend` / `upstream` feeds these functions bytes.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from enum import Enum

from lockd.domain.errors import ValidationError

SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
PROTOCOL_MAJOR = 3
# PostgreSQL's own bound (MAX_STARTUP_PACKET_LENGTH): a longer packet is an attack or junk.
MAX_STARTUP_LENGTH = 10000
# Messages the proxy reads itself during the upstream handshake; data is only relayed.
MAX_HANDSHAKE_MESSAGE = 64 * 1024
# A cancel key: the process id and a secret of 4 (protocol 3.0) to 256 (3.2) bytes.
MIN_CANCEL_KEY, MAX_CANCEL_KEY = 8, 4 + 256

BACKEND_KEY_DATA = b"K"
READY_FOR_QUERY = b"Z"

SSL_ACCEPT = b"S"
SSL_REFUSE = b"N"

# SQLSTATE codes (PostgreSQL appendix A).
INVALID_AUTHORIZATION = "28000"
PROTOCOL_VIOLATION = "08P01"
ADMIN_SHUTDOWN = "57P01"
TOO_MANY_CONNECTIONS = "53300"
CANNOT_CONNECT_NOW = "57P03"
CONNECTION_FAILURE = "08006"

AUTH_OK = 0


class StartupKind(Enum):
    SSL_REQUEST = "ssl_request"
    GSSENC_REQUEST = "gssenc_request"
    CANCEL_REQUEST = "cancel_request"
    STARTUP = "startup"


@dataclass(frozen=True, slots=True)
class StartupPacket:
    """A decoded startup packet; `parameters` only for a StartupMessage (in order),
    `cancel_key` (process id and secret, as BackendKeyData carried them) for a
    CancelRequest."""

    kind: StartupKind
    protocol: int = 0
    parameters: tuple[tuple[str, str], ...] = ()
    cancel_key: bytes = b""

    def parameter(self, name: str) -> str:
        return next((value for key, value in self.parameters if key == name), "")


def startup_length(header: bytes) -> int:
    """The total length announced by a startup packet's first four bytes (checked)."""
    (length,) = struct.unpack("!i", header)
    if not 8 <= length <= MAX_STARTUP_LENGTH:
        raise ValidationError(f"invalid startup packet length {length}")
    return int(length)


def parse_startup(packet: bytes) -> StartupPacket:
    """Decode a whole startup packet (length word included)."""
    if len(packet) < 8 or startup_length(packet[:4]) != len(packet):
        raise ValidationError("truncated startup packet")
    (code,) = struct.unpack("!i", packet[4:8])
    special = {
        SSL_REQUEST_CODE: StartupKind.SSL_REQUEST,
        GSSENC_REQUEST_CODE: StartupKind.GSSENC_REQUEST,
    }
    if code == CANCEL_REQUEST_CODE:
        if not MIN_CANCEL_KEY <= len(packet) - 8 <= MAX_CANCEL_KEY:
            raise ValidationError(f"invalid cancel request length {len(packet)}")
        return StartupPacket(StartupKind.CANCEL_REQUEST, cancel_key=packet[8:])
    if code in special:
        return StartupPacket(special[code])
    if code >> 16 != PROTOCOL_MAJOR:
        raise ValidationError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
    body = packet[8:]
    # Each name and value ends with a NUL, and one more NUL ends the list.
    if body != b"\0" and not body.endswith(b"\0\0"):
        raise ValidationError("startup packet parameters are not terminated")
    fields = body[:-2].split(b"\0") if body != b"\0" else []
    if len(fields) % 2:
        raise ValidationError("startup packet has a parameter without a value")
    try:
        texts = [field.decode("utf-8") for field in fields]
    except UnicodeDecodeError:
        raise ValidationError("startup packet parameters are not UTF-8") from None
    pairs = tuple(zip(texts[0::2], texts[1::2], strict=True))
    if any(not name for name, _ in pairs):
        raise ValidationError("startup packet has an empty parameter name")
    return StartupPacket(StartupKind.STARTUP, code, pairs)


def encode_startup(protocol: int, parameters: tuple[tuple[str, str], ...]) -> bytes:
    body = b"".join(f"{name}\0{value}\0".encode() for name, value in parameters) + b"\0"
    return struct.pack("!ii", len(body) + 8, protocol) + body


def encode_ssl_request() -> bytes:
    return struct.pack("!ii", 8, SSL_REQUEST_CODE)


def encode_cancel_request(cancel_key: bytes) -> bytes:
    """A CancelRequest for the backend that sent `cancel_key` in its BackendKeyData."""
    return struct.pack("!ii", 8 + len(cancel_key), CANCEL_REQUEST_CODE) + cancel_key


def message(kind: bytes, body: bytes) -> bytes:
    """One protocol message: type byte, int32 length (self included), body."""
    return kind + struct.pack("!i", len(body) + 4) + body


@functools.lru_cache(maxsize=64)
def error_response(message_text: str, sqlstate: str, severity: str = "FATAL") -> bytes:
    """An ErrorResponse: psql prints `FATAL:  <message>` from S and M. Cached: a lock's
    farewell is the same for every connection it ends.

    S is the (localisable) severity, V the same never localised (PostgreSQL ≥ 9.6), C the
    SQLSTATE, M the message. A NUL would end a field early, so it is dropped.
    """
    text = message_text.replace("\0", "")
    fields = (("S", severity), ("V", severity), ("C", sqlstate), ("M", text))
    body = b"".join(kind.encode() + value.encode() + b"\0" for kind, value in fields) + b"\0"
    return message(b"E", body)


def parse_error_fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse body, by field type."""
    fields: dict[str, str] = {}
    for item in body.split(b"\0"):
        if item:
            fields[chr(item[0])] = item[1:].decode("utf-8", "replace")
    return fields


def authentication_code(body: bytes) -> int:
    if len(body) < 4:
        raise ValidationError("truncated authentication request")
    (code,) = struct.unpack("!i", body[:4])
    return int(code)


def message_header(header: bytes) -> tuple[bytes, int]:
    """(type, body length) from a message's five header bytes (checked)."""
    (length,) = struct.unpack("!i", header[1:5])
    if length < 4:
        raise ValidationError(f"invalid message length {length}")
    return header[:1], length - 4


_LENGTH = struct.Struct("!i")


class MessageFramer:
    """Follows message boundaries in one direction of a relayed stream.

    Feed it every chunk that passes; `at_boundary` says whether the bytes so far end
    exactly after a whole message. It only jumps from length word to length word (one
    `unpack_from` per message, no copies), and keeps at most four bytes of a header
    split between chunks.
    """

    __slots__ = ("_partial", "_skip")

    def __init__(self) -> None:
        self._skip = 0  # bytes of the current message still to come after this point
        self._partial = b""  # the start of a header cut by a chunk's end (< 5 bytes)

    @property
    def at_boundary(self) -> bool:
        return self._skip == 0 and not self._partial

    def feed(self, data: bytes | memoryview) -> None:
        size = len(data)
        if self._partial:
            head = self._partial + bytes(data[: 5 - len(self._partial)])
            if len(head) < 5:
                self._partial = head
                return
            taken = 5 - len(self._partial)
            self._partial = b""
            position = taken + message_header(head)[1]
        else:
            position = self._skip
        unpack = _LENGTH.unpack_from
        while position + 5 <= size:
            (length,) = unpack(data, position + 1)
            if length < 4:
                raise ValidationError(f"invalid message length {length}")
            position += 1 + length
        if position < size:  # a header cut short
            self._partial, self._skip = bytes(data[position:]), 0
        else:
            self._skip = position - size

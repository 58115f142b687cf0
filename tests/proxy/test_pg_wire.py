"""The PostgreSQL wire codec: startup packets, ErrorResponse, message framing."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockd.domain.errors import ValidationError
from lockd.proxy import pg_wire


def test_an_ssl_request_is_recognised() -> None:
    """The eight bytes libpq sends first."""
    packet = pg_wire.parse_startup(pg_wire.encode_ssl_request())
    assert packet.kind is pg_wire.StartupKind.SSL_REQUEST


def test_a_cancel_request_carries_its_key_of_protocol_3_0_or_3_2_length() -> None:
    """Process id + secret: 8 bytes (3.0), up to 4 + 256 (3.2); shorter or longer refused."""
    for key in (struct.pack("!ii", 4242, -7), b"\1" * 36):
        packet = pg_wire.parse_startup(pg_wire.encode_cancel_request(key))
        assert (packet.kind, packet.cancel_key) == (pg_wire.StartupKind.CANCEL_REQUEST, key)
    for key in (b"\1" * 4, b"\1" * 261):
        with pytest.raises(ValidationError, match="invalid cancel request length"):
            pg_wire.parse_startup(pg_wire.encode_cancel_request(key))


def test_a_startup_message_round_trips_its_parameters_in_order() -> None:
    """Encoding then parsing keeps names, values and their order."""
    parameters = (("user", "alice"), ("database", "app"), ("application_name", "psql"))
    packet = pg_wire.parse_startup(pg_wire.encode_startup(196608, parameters))
    assert packet.kind is pg_wire.StartupKind.STARTUP
    assert packet.parameters == parameters
    assert packet.parameter("database") == "app"
    assert packet.parameter("missing") == ""


@pytest.mark.parametrize(
    ("packet", "problem"),
    [
        (struct.pack("!ii", 8, 2 << 16), "unsupported frontend protocol 2.0"),
        (struct.pack("!ii", 10, 196608) + b"u\0", "not terminated"),
        (struct.pack("!ii", 12, 196608) + b"user", "not terminated"),
        (struct.pack("!ii", 13, 196608) + b"u\0v\0w\0\0"[:5], "not terminated"),
        (struct.pack("!ii", 8, 196608)[:6], "truncated"),
    ],
)
def test_malformed_startup_packets_are_refused(packet: bytes, problem: str) -> None:
    """Junk from a client is a ValidationError naming the problem, never a crash."""
    with pytest.raises(ValidationError, match=problem):
        pg_wire.parse_startup(packet)


def test_an_oversized_startup_length_is_refused_before_reading_it() -> None:
    """The length word alone is enough to refuse a 1 GB 'startup packet'."""
    with pytest.raises(ValidationError, match="invalid startup packet length"):
        pg_wire.startup_length(struct.pack("!i", 1 << 30))


def test_an_error_response_carries_severity_sqlstate_and_the_exact_message() -> None:
    """S and V = FATAL, C = the SQLSTATE, M = the text, as psql reads them."""
    text = 'lock targeting User:"alice" is in force: Suspicious activity.'
    raw = pg_wire.error_response(text, pg_wire.INVALID_AUTHORIZATION)
    kind, length = pg_wire.message_header(raw[:5])
    assert (kind, length) == (b"E", len(raw) - 5)
    fields = pg_wire.parse_error_fields(raw[5:])
    assert fields == {"S": "FATAL", "V": "FATAL", "C": "28000", "M": text}


def _message(kind: bytes, size: int) -> bytes:
    return pg_wire.message(kind, b"x" * size)


@given(
    st.lists(
        st.tuples(st.sampled_from([b"D", b"T", b"C", b"Z"]), st.integers(0, 300)), max_size=20
    ),
    st.lists(st.integers(1, 64), min_size=1, max_size=50),
)
def test_the_framer_is_at_a_boundary_exactly_after_whole_messages(
    messages: list[tuple[bytes, int]], cuts: list[int]
) -> None:
    """However the stream is chunked, `at_boundary` holds exactly at message ends."""
    stream = b"".join(_message(kind, size) for kind, size in messages)
    ends = {0}
    offset = 0
    for kind, size in messages:
        offset += len(_message(kind, size))
        ends.add(offset)
    framer = pg_wire.MessageFramer()
    position, index = 0, 0
    while position < len(stream):
        step = cuts[index % len(cuts)]
        framer.feed(stream[position : position + step])
        position = min(position + step, len(stream))
        index += 1
        assert framer.at_boundary == (position in ends)

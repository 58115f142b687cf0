"""Just enough of etcd's v3 gRPC API for the bench's etcd peer: Put, and Watch on one key.

The few messages used are encoded and decoded by hand (protobuf wire format), with the
field numbers of etcd's public `api/etcdserverpb/rpc.proto` and `api/mvccpb/kv.proto`
(v3.4, the version Debian ships). Why not a client library: `etcd3` on PyPI is
unmaintained (its generated modules need protobuf 3; lockd runs protobuf 6); `aetcd`
is maintained, but it would add a dependency with its own generated stubs for two calls
and owns its channels, while the harness must control them — one TCP connection per
watcher, with the same channel options as the lockd run. Generating stubs from rpc.proto
would need the proto (and its gogoproto/google.api imports) fetched at run time. Put and
one watch need five fields; the calls go over grpc.aio with raw bytes, like the floors'.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

PUT = "/etcdserverpb.KV/Put"
WATCH = "/etcdserverpb.Watch/Watch"
KEY = b"lockd-bench/probe"  # every watcher watches it; every probe puts it

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _length_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH) + _varint(len(data)) + data


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a message: ints for varints, bytes for the rest."""
    at = 0
    while at < len(data):
        tag, at = _read_varint(data, at)
        number, kind = tag >> 3, tag & 7
        if kind == _VARINT:
            value, at = _read_varint(data, at)
            yield number, value
        elif kind == _LENGTH:
            size, at = _read_varint(data, at)
            yield number, data[at : at + size]
            at += size
        elif kind in (_FIXED64, _FIXED32):
            size = 8 if kind == _FIXED64 else 4
            yield number, data[at : at + size]
            at += size
        else:
            raise ValueError(f"unsupported protobuf wire type {kind}")


def put_request(key: bytes, value: bytes) -> bytes:
    """PutRequest{key=1, value=2}."""
    return _length_field(1, key) + _length_field(2, value)


def watch_create(key: bytes) -> bytes:
    """WatchRequest{create_request=1: WatchCreateRequest{key=1}}: watch one key."""
    return _length_field(1, _length_field(1, key))


def header_revision(message: bytes) -> int:
    """ResponseHeader.revision (field 3 of field 1) of a Put or Watch response."""
    for number, value in fields(message):
        if number == 1 and isinstance(value, bytes):
            for inner, revision in fields(value):
                if inner == 3 and isinstance(revision, int):
                    return revision
    return 0


@dataclass(frozen=True, slots=True)
class WatchFrame:
    """What a watcher needs from a WatchResponse."""

    revision: int  # header.revision: the store's revision when the response was sent
    created: bool  # created=3: the watch is registered
    events: int  # events=11: how many

    @classmethod
    def parse(cls, data: bytes) -> WatchFrame:
        created, events = False, 0
        for number, value in fields(data):
            if number == 3:
                created = bool(value)
            elif number == 11:
                events += 1
        return cls(header_revision(data), created, events)

"""PostgreSQL cancel keys: the ones the proxy hands its clients, mapped to the upstream's.

A PostgreSQL client cancels a running query by opening a new connection and sending a
CancelRequest with the key (process id + secret) its session got in BackendKeyData. The
proxy never passes the upstream's key on: each session gets a key of its own, random
(62 bits: a positive process id and a 32-bit secret, so guessing one is as hopeless as
with PostgreSQL itself), and this registry maps it to the upstream backend's key and the
user the session belongs to. A key is withdrawn the moment its session ends or is ended
(a lock, strict mode, shutdown), so a cancel for a locked or ended session is dropped.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

_KEY = struct.Struct("!iI")  # process id (int32, positive), secret (4 bytes)


@dataclass(frozen=True, slots=True)
class CancelTarget:
    """Where a client's cancel key leads: the upstream backend's key, and whose it is."""

    upstream_key: bytes
    user: str


class CancelKeys:
    """The live sessions' cancel keys of one listener (one upstream)."""

    def __init__(self) -> None:
        self._targets: dict[bytes, CancelTarget] = {}

    def __len__(self) -> int:
        return len(self._targets)

    def issue(self, upstream_key: bytes, user: str) -> bytes:
        """A fresh client key (the BackendKeyData body to send) for this upstream key."""
        while True:
            drawn = bytearray(secrets.token_bytes(_KEY.size))
            drawn[0] &= 0x7F  # a positive process id, as a backend's
            key = bytes(drawn)
            if _KEY.unpack(key)[0] and key not in self._targets:
                self._targets[key] = CancelTarget(upstream_key, user)
                return key

    def target(self, key: bytes) -> CancelTarget | None:
        return self._targets.get(key)

    def withdraw(self, key: bytes) -> None:
        self._targets.pop(key, None)

"""The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), as PostgreSQL runs it: pure.

The proxy logs in to an upstream PostgreSQL that asks for a password with the configured
`password_file`'s password. PostgreSQL's SASL exchange: AuthenticationSASL names the
mechanisms, the client answers with SASLInitialResponse (`client-first-message`), the
server sends `server-first-message` (AuthenticationSASLContinue), the client its proof
(SASLResponse, `client-final-message`), the server its signature (AuthenticationSASLFinal),
which the client checks before it believes the AuthenticationOk that follows.
No channel binding (`n,,`: the proxy may reach its upstream without TLS); the user name
is empty, as libpq sends it (PostgreSQL takes the StartupMessage's). The password is
normalised with NFKC, SASLprep's mapping; ASCII passwords are used as they are.

The salted password (PBKDF2, 4096 rounds by default: milliseconds of CPU) is computed once
per salt and kept: PostgreSQL sends the same salt for a role every time, so only the
first connection pays it on the event loop.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import struct
import unicodedata

from lockd.domain.errors import UnavailableError
from lockd.proxy import pg_wire

MECHANISM = "SCRAM-SHA-256"
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12
# PostgreSQL's default is 4096; far more would let an upstream stall the event loop.
MAX_ITERATIONS = 100_000
_GS2_HEADER = "n,,"


def mechanisms(body: bytes) -> tuple[str, ...]:
    """The mechanism names of an AuthenticationSASL body (after the int32 code)."""
    return tuple(name.decode("utf-8", "replace") for name in body[4:].split(b"\0") if name)


def _attributes(message: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in message.split(","))
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


@functools.lru_cache(maxsize=64)
def _salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


class ScramClient:
    """One SCRAM-SHA-256 exchange: `initial_response()`, `final_response(server_first)`,
    `verify(server_final)`; each response is the whole PasswordMessage ('p') to send."""

    def __init__(self, password: str, *, user: str = "", nonce: str = "") -> None:
        self._password = unicodedata.normalize("NFKC", password).encode()
        self._nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        name = user.replace("=", "=3D").replace(",", "=2C")
        self._client_first_bare = f"n={name},r={self._nonce}"
        self._server_signature = b""

    def initial_response(self) -> bytes:
        first = (_GS2_HEADER + self._client_first_bare).encode()
        body = MECHANISM.encode() + b"\0" + struct.pack("!i", len(first)) + first
        return pg_wire.message(b"p", body)

    def final_response(self, server_first_message: bytes) -> bytes:
        server_first = server_first_message.decode("utf-8", "replace")
        fields = _attributes(server_first)
        nonce, salt, rounds = fields.get("r", ""), fields.get("s", ""), fields.get("i", "")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise UnavailableError("the upstream's SCRAM nonce does not extend the proxy's")
        if not rounds.isdigit() or not 1 <= int(rounds) <= MAX_ITERATIONS:
            raise UnavailableError(f"the upstream's SCRAM iteration count is unusable: {rounds}")
        try:
            salted = _salted_password(self._password, base64.b64decode(salt), int(rounds))
        except ValueError:
            raise UnavailableError("the upstream's SCRAM salt is not base64") from None
        channel = base64.b64encode(_GS2_HEADER.encode()).decode()
        without_proof = f"c={channel},r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        client_key = _hmac(salted, b"Client Key")
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        final = f"{without_proof},p={base64.b64encode(proof).decode()}"
        return pg_wire.message(b"p", final.encode())

    def verify(self, server_final_message: bytes) -> None:
        """The server proved it knows the password too (else: not our upstream)."""
        fields = _attributes(server_final_message.decode("utf-8", "replace"))
        if "e" in fields:
            raise UnavailableError(f"the upstream refused the SCRAM proof: {fields['e']}")
        try:
            signature = base64.b64decode(fields.get("v", ""), validate=True)
        except ValueError:
            signature = b""
        if not self._server_signature or not hmac.compare_digest(signature, self._server_signature):
            raise UnavailableError("the upstream's SCRAM signature is wrong")

"""`host:port` addresses: one parser for config, clients, join and metrics endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from lockd.domain.errors import ValidationError

ADDRESS_EXAMPLE = "e.g. 127.0.0.1:3025 or [::1]:3025"


@dataclass(frozen=True, slots=True)
class HostPort:
    """A parsed address; `host` has no brackets (an IPv6 literal is bare)."""

    host: str
    port: int


def parse_host_port(value: str, *, allow_port_zero: bool = False) -> HostPort:
    """`host:port` with a non-empty host (`[v6]` in brackets) and a port in range.

    Port 0 (any free port) is allowed where lockd listens, not where it dials. Raises
    ValidationError whose message says what is wrong, without naming the setting.
    """
    host, colon, port = value.rpartition(":")
    if not colon or not host or not port:
        raise ValidationError(f"want host:port, {ADDRESS_EXAMPLE}")
    bracketed = host.startswith("[") and host.endswith("]")
    if (":" in host and not bracketed) or any(ch.isspace() for ch in host):
        raise ValidationError(f"want host:port, {ADDRESS_EXAMPLE}")
    if not port.isascii() or not port.isdigit():
        raise ValidationError(f'port "{port}" is not a number')
    lowest = 0 if allow_port_zero else 1
    if not lowest <= int(port) <= 65535:
        raise ValidationError(f"port {int(port)} is not in {lowest}..65535")
    return HostPort(host.strip("[]"), int(port))


def split_host_port(address: str) -> tuple[str, str]:
    """`(host, port)` of an address already known to be well formed (brackets removed)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def join_host_port(host: str, port: int | str) -> str:
    """The address of `host` and `port`, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

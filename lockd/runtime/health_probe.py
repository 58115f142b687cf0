"""`lockd health`: ask the local services' /readyz (or /healthz) over plain HTTP.

For Docker's HEALTHCHECK and scripts: no client certificate, no gRPC, only the metrics
ports the config names. An address bound to every interface is asked on loopback.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from lockd.config import Config
from lockd.domain.addresses import join_host_port, parse_host_port
from lockd.domain.errors import ValidationError

TIMEOUT = 5.0
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    service: str
    url: str
    ok: bool
    detail: str


def probe_urls(config: Config, path: str) -> list[tuple[str, str]]:
    """(service, URL) for each enabled service with a metrics address."""
    targets = []
    if config.auth_service.enabled and config.auth_service.metrics_addr:
        targets.append(("auth", config.auth_service.metrics_addr))
    if config.agent_service.enabled and config.agent_service.metrics_addr:
        targets.append(("agent", config.agent_service.metrics_addr))
    if not targets:
        raise ValidationError(
            "no enabled service has a metrics_addr: lockd health asks its /readyz there"
        )
    urls = []
    for service, addr in targets:
        address = parse_host_port(addr, allow_port_zero=True)
        host = _LOOPBACK.get(address.host, address.host)
        urls.append((service, f"http://{join_host_port(host, address.port)}{path}"))
    return urls


def probe(config: Config, *, live: bool = False) -> list[ProbeResult]:
    """Ask every service; a refused connection or a 503 is not ok, with the reason."""
    results = []
    for service, url in probe_urls(config, "/healthz" if live else "/readyz"):
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                body = response.read().decode(errors="replace").strip()
                results.append(ProbeResult(service, url, True, body))
        except urllib.error.HTTPError as error:
            with error:
                body = error.read().decode(errors="replace").strip()
            results.append(ProbeResult(service, url, False, body or str(error)))
        except OSError as error:
            results.append(ProbeResult(service, url, False, f"cannot connect: {error}"))
    return results

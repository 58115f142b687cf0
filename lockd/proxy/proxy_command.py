"""`lockd proxy --config FILE`: run the proxy until SIGTERM or SIGINT, then stop cleanly.

`lockd proxy server-cert ...` issues the proxy's certificate instead (`server_cert`).

Exit codes as the other daemons: 0 after a clean stop, 1 when it cannot start (a port
taken, TLS files unreadable), 2 for a bad config (`ERROR: <file>: <key>: <problem>`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from lockd.domain.errors import LockdError, UnavailableError
from lockd.obs.http_endpoint import MetricsEndpoint
from lockd.obs.logging import configure_logging
from lockd.proxy import server_cert
from lockd.proxy.proxy_config import ProxyConfig, load_proxy_config
from lockd.proxy.proxy_service import ProxyService

_log = structlog.get_logger("lockd.proxy")

DEFAULT_CONFIG = Path("/etc/lockd-proxy.yaml")
GC_THRESHOLDS = (700, 10, 100)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockd proxy",
        description="An identity-aware TLS proxy for PostgreSQL, HTTP and TCP services that "
        "enforces lockd locks (docs/proxy.md).",
        epilog="Example: lockd proxy --config /etc/lockd-proxy.yaml\n"
        "Its certificate: lockd proxy server-cert --help",
    )
    parser.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, help="the proxy's YAML config"
    )
    return parser


def main(argv: Sequence[str]) -> int:
    if list(argv[:1]) == ["server-cert"]:
        return server_cert.main(argv[1:])
    args = build_parser().parse_args(list(argv))
    try:
        config = load_proxy_config(args.config)
    except LockdError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    try:
        asyncio.run(run(config))
    except LockdError as error:
        _log.error("lockd proxy failed", error=str(error))
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


async def run(config: ProxyConfig) -> None:
    # Full collections ten times rarer than Python's default: with a thousand connections
    # most objects are long-lived and few are garbage, and on the bench machine a full
    # collection took 200-660 ms, stalling every relay and termination meanwhile
    # (docs/benchmarks.md). Young collections stay small: a larger first threshold made
    # each of them a pause of its own.
    gc.set_threshold(*GC_THRESHOLDS)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    registry = CollectorRegistry()
    async with contextlib.AsyncExitStack() as stack:
        if config.metrics_addr:
            endpoint = MetricsEndpoint(registry, config.metrics_addr)
            try:
                endpoint.start()
            except OSError as error:
                raise UnavailableError(
                    f"cannot serve metrics on {config.metrics_addr}: {error}"
                ) from None
            stack.callback(endpoint.stop)
        await stack.enter_async_context(await ProxyService.start(config, registry))
        gc.freeze()  # what the start made (modules, gRPC, TLS contexts) is never garbage
        await stop.wait()
        _log.info("stopping: no new connections; draining", timeout=str(config.shutdown_timeout))

"""The metrics every lockd service exports besides its own: build, process, readiness.

`lockd_build_info{version,python}` (always 1: join on it to label dashboards with the
version), `lockd_ready` (1 while `/readyz` answers 200, so an alert sees a server that
runs but does not serve), and prometheus_client's process_* (CPU, memory, file
descriptors), python_gc_* and python_info collectors, registered on the service's own
registry: lockd never uses the process-global one.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from lockd import __version__


def register_process_metrics(registry: CollectorRegistry, ready: Callable[[], bool]) -> None:
    """Add build info, readiness and the process, GC and platform collectors."""
    build = Gauge(
        "lockd_build_info",
        "Always 1; the labels say which lockd and Python run.",
        ["version", "python"],
        registry=registry,
    )
    build.labels(version=__version__, python=platform.python_version()).set(1)
    readiness = Gauge(
        "lockd_ready",
        "1 while the service is ready (its /readyz answers 200), 0 otherwise.",
        registry=registry,
    )
    readiness.set_function(lambda: 1.0 if ready() else 0.0)
    ProcessCollector(registry=registry)
    GCCollector(registry=registry)
    PlatformCollector(registry=registry)

"""Garbage-collector settings for long-running lockd processes (daemons, bench workers)."""

from __future__ import annotations

import gc

# Many long-lived objects for each stream or session, and a high allocation rate: with
# CPython's default (700, 10, 10) the collector ran ~100 times a second and its full
# collections stopped the event loop for 100+ ms (`lockd bench`, docs/benchmarks.md).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Collect once, keep what survived the start (modules, the loaded state) out of every
    later collection, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)

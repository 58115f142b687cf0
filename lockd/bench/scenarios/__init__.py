"""The `lockd bench` scenarios, one module each (docs/benchmarks.md describes them)."""

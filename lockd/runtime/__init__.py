"""The composition layer: the only place that wires lockd together.

It builds stores, hubs, services, background loops and gRPC servers from a config
(`builders`), and runs them as async context managers (`AuthServer`, `AgentServer`), so a
caller never holds a half-built server. The `lockd` command (`lockd.daemon`) and the
benchmarks (`lockd.bench`) start servers through it.
"""

"""The node agent: local view runtime, session signalling and the persisted last view.

The rules live in `lockd.domain.view`; this package carries out their effects (signal
sidecars, persist the view, export metrics and audit). The gRPC edges — the WatchLocks
client and the AgentService on the Unix socket — are in `lockd.api`.
"""

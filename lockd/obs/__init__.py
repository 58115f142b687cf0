"""Observability adapters: structlog setup, Prometheus metric definitions, the audit sink.

Nothing here imports grpc or generated code; the API layer feeds these from its
interceptors, and the daemon wires them from the config.
"""

"""Auth-server use cases: locks and cluster resources, replication fan-out, expiry.

Nothing here imports grpc or generated code; serialisation reaches the fan-out through
the `WatchEncoder` port that `lockd.api` implements.
"""

"""The server side of the gRPC edge: servicers, interceptors and server TLS.

Servicers translate protobuf to domain values (`lockd.wire.convert`), call the use cases
of `lockd.auth` / `lockd.agent`, and map domain errors to status codes through one table
(`lockd.wire.status_table`). Building and running the servers is `lockd.runtime`'s job;
the client side of the wire is `lockd.client`.
"""

"""The gRPC edge: the only package that imports grpc and the generated lockd.v1 code.

Servicers translate protobuf to domain values (`convert`), call the use cases of
`lockd.auth` / `lockd.agent`, and map domain errors to status codes through one table
(`errors`).
"""

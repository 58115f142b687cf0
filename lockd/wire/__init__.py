"""What both ends of the gRPC wire share: protobuf ⇄ domain conversion and the one table
that maps domain errors to gRPC status codes and back.

The server side (`lockd.api`) and the client side (`lockd.client`) both build on it; it
knows neither of them.
"""

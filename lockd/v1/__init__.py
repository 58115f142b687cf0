"""Generated protobuf and gRPC code for lockd.v1 (scripts/gen_proto.py)."""

"""What every lockd gRPC server shares: channel options, health and reflection."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

# Small HTTP/2 windows keep per-stream memory bounded (DESIGN §3). No SO_REUSEPORT: a
# second process on a taken port must fail to bind, not share the port and split the
# agents between two servers (issue 11). The one exception is the auth port of a server
# with watch workers (lockd.runtime.fanout_pool), shared by that server's own processes
# only, after it made sure nobody else holds the port.
NO_REUSEPORT = ("grpc.so_reuseport", 0)
_COMMON_OPTIONS = [
    ("grpc.http2.bdp_probe", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_concurrent_streams", 100_000),
]
SERVER_OPTIONS = [NO_REUSEPORT, *_COMMON_OPTIONS]
SHARED_PORT_OPTIONS = [("grpc.so_reuseport", 1), *_COMMON_OPTIONS]


class HealthReporter:
    """One `grpc.health.v1` servicer for a process's services, plus reflection for them.

    Health answers for the empty name (the whole server) and for each service name.
    """

    def __init__(self, service_names: Sequence[str]) -> None:
        self._names = tuple(service_names)
        self._servicer = health.aio.HealthServicer()

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self._names):
            await self._servicer.set(name, status)

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve health and reflection (for the services and health itself) on `server`."""
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        reflection.enable_server_reflection(
            (*self._names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )

"""AgentService on the agent's Unix socket: the session channel, access checks, status.

Served by one generic handler with bytes in and out: requests are parsed here (an
undecodable one is INVALID_ARGUMENT, not a traceback), and CheckAccess answers an
allowed check with bytes encoded once per mode — the hot path builds no message.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from lockd.agent.runtime import AgentRuntime
from lockd.agent.session_hub import SessionHub
from lockd.api.handler import Context
from lockd.api.session_channel_servicer import SessionChannelHandler
from lockd.domain.errors import ValidationError
from lockd.domain.modes import LockingMode
from lockd.domain.view import Decision
from lockd.v1 import agent_service_pb2 as pb
from lockd.wire import convert
from lockd.wire.session_convert import decision_to_pb
from lockd.wire.status_table import status_for

SERVICE_NAME = "lockd.v1.AgentService"
M = TypeVar("M", pb.CheckAccessRequest, pb.GetStatusRequest)


def _identity(payload: bytes) -> bytes:
    return payload


def _unary(
    method: Callable[[bytes], bytes],
) -> Callable[[bytes, Context], Awaitable[bytes]]:
    """A bytes-in, bytes-out unary handler; domain errors become their status codes."""

    @functools.wraps(method)
    async def handler(request: bytes, context: Context) -> bytes:
        try:
            return method(request)
        except Exception as error:
            await context.abort(*status_for(error))
            raise  # abort() raises; this only satisfies the type checker

    return handler


class AgentServicer:
    def __init__(self, runtime: AgentRuntime, hub: SessionHub) -> None:
        self._runtime = runtime
        self._channels = SessionChannelHandler(hub)
        self._hub = hub
        self._allowed = {
            mode: pb.CheckAccessResponse(
                decision=decision_to_pb(Decision(True, mode))
            ).SerializeToString()
            for mode in LockingMode
        }

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            "SessionChannel": grpc.stream_stream_rpc_method_handler(
                self._channels.session_channel,
                request_deserializer=_identity,
                response_serializer=_identity,
            ),
            "CheckAccess": grpc.unary_unary_rpc_method_handler(
                _unary(self.check_access),
                request_deserializer=_identity,
                response_serializer=_identity,
            ),
            "GetStatus": grpc.unary_unary_rpc_method_handler(
                _unary(self.get_status),
                request_deserializer=_identity,
                response_serializer=_identity,
            ),
        }
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def check_access(self, payload: bytes) -> bytes:
        request = _parse(pb.CheckAccessRequest, payload)
        decision = self._runtime.check_access(convert.identity_from_pb(request.identity))
        if decision.allowed:
            return self._allowed[decision.mode]
        return pb.CheckAccessResponse(decision=decision_to_pb(decision)).SerializeToString()

    def get_status(self, payload: bytes) -> bytes:
        _parse(pb.GetStatusRequest, payload)
        runtime = self._runtime
        view = runtime.view
        now = runtime.clock.monotonic()
        age = view.age(now)
        return pb.GetStatusResponse(
            server_id=runtime.server_id,
            state=convert.SYNC_STATE_TO_PB[view.sync_state(now)],
            epoch=view.state.epoch,
            revision=view.state.revision,
            freshness_age=convert.duration_to_pb(
                convert.timedelta_seconds(age if age is not None else 0.0)
            ),
            locks_in_force=view.locks.count_in_force(runtime.clock.now()),
            sessions=view.session_count,
            cluster_locking_mode=convert.MODE_TO_PB[
                view.state.cluster_auth_preference.locking_mode
            ],
            channels=len(self._hub.channels),
        ).SerializeToString()


def _parse(kind: type[M], payload: bytes) -> M:
    try:
        return kind.FromString(payload)
    except DecodeError:
        raise ValidationError(
            f"could not decode a {kind.DESCRIPTOR.name} ({len(payload)} bytes)"
        ) from None

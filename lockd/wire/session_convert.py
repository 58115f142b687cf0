"""Protobuf ⇄ domain conversion for the sidecar API: decisions, session metadata, causes.

Shared by the agent's servicer and the sidecar client, so both sides read the same
messages the same way. Conversion from protobuf validates (unknown enum values are a
ValidationError naming the field).
"""

from __future__ import annotations

from lockd.domain.errors import ValidationError
from lockd.domain.modes import LockingMode
from lockd.domain.sessions import SessionMetadata, SessionProtocol
from lockd.domain.view import Decision, TerminationCause
from lockd.v1 import agent_service_pb2 as pb
from lockd.wire import convert

PROTOCOL_TO_PB = {
    SessionProtocol.UNSPECIFIED: pb.SESSION_PROTOCOL_UNSPECIFIED,
    SessionProtocol.SSH: pb.SESSION_PROTOCOL_SSH,
    SessionProtocol.DB: pb.SESSION_PROTOCOL_DB,
    SessionProtocol.APP: pb.SESSION_PROTOCOL_APP,
    SessionProtocol.DESKTOP: pb.SESSION_PROTOCOL_DESKTOP,
    SessionProtocol.K8S: pb.SESSION_PROTOCOL_K8S,
    SessionProtocol.TCP: pb.SESSION_PROTOCOL_TCP,
}
PROTOCOL_FROM_PB = {value: key for key, value in PROTOCOL_TO_PB.items()}
CAUSE_TO_PB = {
    TerminationCause.LOCK: pb.TERMINATION_CAUSE_LOCK,
    TerminationCause.SERVER_LOCK: pb.TERMINATION_CAUSE_SERVER_LOCK,
    TerminationCause.STRICT_STALE: pb.TERMINATION_CAUSE_STRICT_STALE,
}
CAUSE_FROM_PB = {value: key for key, value in CAUSE_TO_PB.items()}


def decision_to_pb(decision: Decision) -> pb.Decision:
    return pb.Decision(
        allowed=decision.allowed,
        reason=decision.reason,
        lock_name=decision.lock_name,
        mode=convert.MODE_TO_PB[decision.mode],
    )


def decision_from_pb(message: pb.Decision) -> Decision:
    mode = convert.MODE_FROM_PB.get(message.mode) or LockingMode.BEST_EFFORT
    return Decision(message.allowed, mode, message.reason, message.lock_name)


def metadata_to_pb(metadata: SessionMetadata) -> pb.SessionMetadata:
    return pb.SessionMetadata(
        protocol=PROTOCOL_TO_PB[metadata.protocol],
        remote_address=metadata.remote_address,
        target_resource=metadata.target_resource,
        started_at=convert.timestamp_to_pb(metadata.started_at),
    )


def metadata_from_pb(message: pb.SessionMetadata) -> SessionMetadata:
    protocol = PROTOCOL_FROM_PB.get(message.protocol)
    if protocol is None:
        raise ValidationError(f"metadata.protocol {message.protocol} is not a SessionProtocol")
    try:
        started = convert.timestamp_from_pb(message, "started_at")
    except (ValueError, OverflowError):
        raise ValidationError("metadata.started_at is out of range") from None
    return SessionMetadata(protocol, message.remote_address, message.target_resource, started)

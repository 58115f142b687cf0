"""AgentService on the agent's Unix socket: sessions, access checks and status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from lockd.agent.runtime import AgentRuntime
from lockd.api.handler import Context, unary
from lockd.domain.errors import LockdError
from lockd.domain.view import Decision
from lockd.v1 import agent_service_pb2 as pb
from lockd.v1 import agent_service_pb2_grpc as agent_grpc
from lockd.wire import convert
from lockd.wire.status_table import status_for


def decision_to_pb(decision: Decision) -> pb.Decision:
    return pb.Decision(
        allowed=decision.allowed,
        reason=decision.reason,
        lock_name=decision.lock_name,
        mode=convert.MODE_TO_PB[decision.mode],
    )


class AgentServicer(agent_grpc.AgentServiceServicer):
    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime

    async def OpenSession(
        self, request: pb.OpenSessionRequest, context: Context
    ) -> AsyncIterator[pb.OpenSessionResponse]:
        runtime = self._runtime
        identity = convert.identity_from_pb(request.identity)
        try:
            session_id, decision, signal = runtime.open_session(identity, request.session_id)
        except LockdError as error:  # e.g. the id of a live session: FAILED_PRECONDITION
            await context.abort(*status_for(error))
            return
        try:
            yield pb.OpenSessionResponse(
                opened=pb.SessionOpened(session_id=session_id, decision=decision_to_pb(decision))
            )
            if signal is None:
                return
            try:
                # Shielded: the sidecar leaving cancels this handler, not the signal; a
                # cancelled signal means the agent is shutting down.
                termination = await asyncio.shield(signal)
            except asyncio.CancelledError:
                if not signal.cancelled():
                    raise  # the sidecar went away: the finally clause unregisters it
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the agent is shutting down")
                return
            yield pb.OpenSessionResponse(
                terminated=pb.SessionTerminated(
                    reason=termination.reason, lock_name=termination.lock_name
                )
            )
        finally:
            runtime.close_session(session_id)

    @unary
    async def CheckAccess(
        self, request: pb.CheckAccessRequest, context: Context
    ) -> pb.CheckAccessResponse:
        decision = self._runtime.check_access(convert.identity_from_pb(request.identity))
        return pb.CheckAccessResponse(decision=decision_to_pb(decision))

    @unary
    async def GetStatus(
        self, request: pb.GetStatusRequest, context: Context
    ) -> pb.GetStatusResponse:
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
            locks_in_force=len(view.locks.in_force(runtime.clock.now())),
            sessions=view.session_count,
            cluster_locking_mode=convert.MODE_TO_PB[
                view.state.cluster_auth_preference.locking_mode
            ],
        )

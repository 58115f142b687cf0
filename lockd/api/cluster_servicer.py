"""The ClusterService servicer: cluster auth preference, roles, users, cluster status.

The status covers the whole cluster: every auth replica and the agents on each, from
the replica set (lockd.auth.replica_set); this replica's own part is live.
"""

from __future__ import annotations

from datetime import timedelta

from lockd import __version__
from lockd.api.handler import CallerResolver, Context, unary
from lockd.auth.auth_service import AuthService
from lockd.auth.replica_set import ReplicaSet
from lockd.domain.errors import ValidationError
from lockd.domain.replicas import AgentPresence
from lockd.domain.timeparse import format_duration
from lockd.v1 import cluster_service_pb2 as cluster_pb
from lockd.v1 import cluster_service_pb2_grpc as cluster_grpc
from lockd.wire import convert

# The longest a status call waits for acks (GetClusterStatusRequest.hold): long enough to
# save most calls while the agents ack, short enough for progress to be shown.
MAX_HOLD = timedelta(seconds=10)

AGENT_STATE_TO_PB = {
    "syncing": cluster_pb.AGENT_SYNC_STATE_SYNCING,
    "synced": cluster_pb.AGENT_SYNC_STATE_SYNCED,
    "degraded": cluster_pb.AGENT_SYNC_STATE_DEGRADED,
    "stale": cluster_pb.AGENT_SYNC_STATE_STALE,
    "unresponsive": cluster_pb.AGENT_SYNC_STATE_UNRESPONSIVE,
    "locked": cluster_pb.AGENT_SYNC_STATE_LOCKED,
}


class ClusterServicer(cluster_grpc.ClusterServiceServicer):
    def __init__(
        self,
        service: AuthService,
        replicas: ReplicaSet,
        caller_of: CallerResolver,
        ca_pin: str = "",
    ) -> None:
        self._service = service
        self._replicas = replicas
        self._caller_of = caller_of
        self._ca_pin = ca_pin

    @unary
    async def GetClusterAuthPreference(
        self, request: cluster_pb.GetClusterAuthPreferenceRequest, context: Context
    ) -> cluster_pb.GetClusterAuthPreferenceResponse:
        cap, effective = self._service.get_cluster_auth_preference(self._caller_of(context))
        return cluster_pb.GetClusterAuthPreferenceResponse(
            cluster_auth_preference=convert.cap_to_pb(cap),
            effective_locking_mode=convert.MODE_TO_PB[effective],
        )

    @unary
    async def SetClusterAuthPreference(
        self, request: cluster_pb.SetClusterAuthPreferenceRequest, context: Context
    ) -> cluster_pb.SetClusterAuthPreferenceResponse:
        cap = convert.cap_from_pb(request.cluster_auth_preference)
        revision = await self._service.set_cluster_auth_preference(self._caller_of(context), cap)
        return cluster_pb.SetClusterAuthPreferenceResponse(revision=revision)

    @unary
    async def GetRole(
        self, request: cluster_pb.GetRoleRequest, context: Context
    ) -> cluster_pb.GetRoleResponse:
        role = self._service.get_role(self._caller_of(context), request.name)
        return cluster_pb.GetRoleResponse(role=convert.role_to_pb(role))

    @unary
    async def ListRoles(
        self, request: cluster_pb.ListRolesRequest, context: Context
    ) -> cluster_pb.ListRolesResponse:
        roles = self._service.list_roles(self._caller_of(context))
        return cluster_pb.ListRolesResponse(roles=[convert.role_to_pb(role) for role in roles])

    @unary
    async def PutRole(
        self, request: cluster_pb.PutRoleRequest, context: Context
    ) -> cluster_pb.PutRoleResponse:
        role = convert.role_from_pb(request.role, validate=False)
        mode = convert.put_mode_from_pb(request.mode)
        created, revision = await self._service.put_role(self._caller_of(context), role, mode)
        return cluster_pb.PutRoleResponse(created=created, revision=revision)

    @unary
    async def DeleteRole(
        self, request: cluster_pb.DeleteRoleRequest, context: Context
    ) -> cluster_pb.DeleteRoleResponse:
        revision = await self._service.delete_role(self._caller_of(context), request.name)
        return cluster_pb.DeleteRoleResponse(revision=revision)

    @unary
    async def GetUser(
        self, request: cluster_pb.GetUserRequest, context: Context
    ) -> cluster_pb.GetUserResponse:
        user = await self._service.get_user(self._caller_of(context), request.name)
        return cluster_pb.GetUserResponse(user=convert.user_to_pb(user))

    @unary
    async def ListUsers(
        self, request: cluster_pb.ListUsersRequest, context: Context
    ) -> cluster_pb.ListUsersResponse:
        users = await self._service.list_users(self._caller_of(context))
        return cluster_pb.ListUsersResponse(users=[convert.user_to_pb(user) for user in users])

    @unary
    async def PutUser(
        self, request: cluster_pb.PutUserRequest, context: Context
    ) -> cluster_pb.PutUserResponse:
        user = convert.user_from_pb(request.user, validate=False)
        mode = convert.put_mode_from_pb(request.mode)
        created = await self._service.put_user(self._caller_of(context), user, mode)
        return cluster_pb.PutUserResponse(created=created)

    @unary
    async def DeleteUser(
        self, request: cluster_pb.DeleteUserRequest, context: Context
    ) -> cluster_pb.DeleteUserResponse:
        await self._service.delete_user(self._caller_of(context), request.name)
        return cluster_pb.DeleteUserResponse()

    @unary
    async def GetClusterStatus(
        self, request: cluster_pb.GetClusterStatusRequest, context: Context
    ) -> cluster_pb.GetClusterStatusResponse:
        service = self._service
        service.authorize_status(self._caller_of(context))
        hold = _hold(request)
        if request.await_revision:  # lockctl lock --wait: agents, ack it at once
            service.agents.request_ack(request.await_revision)
        expired = False
        if hold:
            applied = await self._replicas.hold_until_applied(
                service.hub.epoch, request.await_revision, hold
            )
            expired = not applied
        members = await self._replicas.members()
        return cluster_pb.GetClusterStatusResponse(
            cluster_name=service.cluster.name,
            version=__version__,
            ca_pin=self._ca_pin,
            store_type=service.store.type,
            store_healthy=service.store.healthy,
            epoch=service.hub.epoch,
            revision=service.hub.revision,
            agents=[self._agent_status(agent) for agent in members.agents],
            replicas=[
                cluster_pb.ReplicaStatus(
                    replica_id=view.record.replica_id,
                    address=view.record.address,
                    healthy=view.record.healthy and view.alive,
                    revision=view.record.revision,
                    epoch=view.record.epoch,
                    agents=view.record.agents,
                    heartbeat_time=convert.timestamp_to_pb(view.record.heartbeat_at),
                    alive=view.alive,
                )
                for view in members.replicas
            ],
            replica_id=self._replicas.replica_id,
            hold_expired=expired,
        )

    def _agent_status(self, agent: AgentPresence) -> cluster_pb.AgentStatus:
        hub = self._service.hub
        return cluster_pb.AgentStatus(
            server_id=agent.agent_id,
            address=agent.address,
            state=AGENT_STATE_TO_PB.get(agent.state, cluster_pb.AGENT_SYNC_STATE_UNSPECIFIED),
            applied_revision=agent.applied_revision,
            lag=max(0, hub.revision - agent.applied_revision)
            if agent.epoch == hub.epoch
            else hub.revision,
            last_ack=convert.timestamp_to_pb(agent.last_ack),
            last_frame=convert.timestamp_to_pb(agent.last_frame),
            connected=agent.connected,
            epoch=agent.epoch,
            replica_id=agent.replica_id,
        )


def _hold(request: cluster_pb.GetClusterStatusRequest) -> float:
    """The request's hold in seconds (0: none); ValidationError when out of bounds."""
    if not request.HasField("hold"):
        return 0.0
    hold = convert.duration_from_pb(request.hold, "hold").total_seconds()
    if not 0 <= hold <= MAX_HOLD.total_seconds():
        raise ValidationError(f"hold must be between 0 and {format_duration(MAX_HOLD)}")
    if hold and not request.await_revision:
        raise ValidationError("hold needs await_revision: it waits for the agents' acks of it")
    return hold

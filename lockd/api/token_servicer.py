"""gRPC servicer of TokenService: list and revoke join tokens (by their digest's start)."""

from __future__ import annotations

from lockd.api.handler import CallerResolver, Context, unary
from lockd.auth.certificates import IdentityService
from lockd.domain.ports import JoinToken
from lockd.obs.audit import token_id
from lockd.v1 import token_service_pb2 as pb
from lockd.v1 import token_service_pb2_grpc as token_grpc
from lockd.wire import convert


def token_to_pb(token: JoinToken) -> pb.TokenInfo:
    return pb.TokenInfo(
        id=token_id(token.digest),
        type=token.kind,
        expires=convert.timestamp_to_pb(token.expires),
        created_by=token.created_by,
    )


class TokenServicer(token_grpc.TokenServiceServicer):
    def __init__(self, service: IdentityService, caller_of: CallerResolver) -> None:
        self._service = service
        self._caller_of = caller_of

    @unary
    async def ListTokens(
        self, request: pb.ListTokensRequest, context: Context
    ) -> pb.ListTokensResponse:
        tokens = await self._service.list_tokens(self._caller_of(context))
        return pb.ListTokensResponse(tokens=[token_to_pb(token) for token in tokens])

    @unary
    async def DeleteToken(
        self, request: pb.DeleteTokenRequest, context: Context
    ) -> pb.DeleteTokenResponse:
        token = await self._service.delete_token(self._caller_of(context), request.id_prefix)
        return pb.DeleteTokenResponse(token=token_to_pb(token))

"""gRPC servicer of IdentityService: user certificates, join tokens, agent join/renew."""

from __future__ import annotations

from lockd.api.handler import CallerResolver, Context, unary
from lockd.api.server_tls import anonymous_caller
from lockd.auth.certificates import AGENT_TOKEN_KIND, IdentityService, IssuedCertificate
from lockd.domain.errors import ValidationError
from lockd.v1 import identity_service_pb2 as pb
from lockd.v1 import identity_service_pb2_grpc as identity_grpc
from lockd.wire import convert

TOKEN_TYPES = {pb.TOKEN_TYPE_AGENT: AGENT_TOKEN_KIND}


class IdentityServicer(identity_grpc.IdentityServiceServicer):
    def __init__(self, service: IdentityService, caller_of: CallerResolver) -> None:
        self._service = service
        self._caller_of = caller_of

    @unary
    async def SignUserIdentity(
        self, request: pb.SignUserIdentityRequest, context: Context
    ) -> pb.SignUserIdentityResponse:
        issued = await self._service.sign_user(
            self._caller_of(context),
            request.user,
            convert.duration_from_pb(request.ttl, "ttl"),
            request.csr_pem,
        )
        return pb.SignUserIdentityResponse(
            certificate_pem=issued.certificate_pem,
            ca_certificate_pem=issued.ca_certificate_pem,
            roles=issued.roles,
            not_after=convert.timestamp_to_pb(issued.not_after),
        )

    @unary
    async def SignSSHUserCertificate(
        self, request: pb.SignSSHUserCertificateRequest, context: Context
    ) -> pb.SignSSHUserCertificateResponse:
        signed = await self._service.sign_ssh_user(
            self._caller_of(context),
            request.user,
            convert.duration_from_pb(request.ttl, "ttl"),
            request.public_key,
            tuple(request.principals),
            (request.mfa_device, request.device),
        )
        return pb.SignSSHUserCertificateResponse(
            certificate=signed.certificate,
            ca_public_key=signed.ca_public_key,
            roles=signed.roles,
            not_after=convert.timestamp_to_pb(signed.not_after),
        )

    @unary
    async def CreateToken(
        self, request: pb.CreateTokenRequest, context: Context
    ) -> pb.CreateTokenResponse:
        kind = TOKEN_TYPES.get(request.type)
        if kind is None:
            raise ValidationError(f"type: token type {request.type} not supported (agent: 1)")
        token, expires = await self._service.create_token(
            self._caller_of(context), kind, convert.duration_from_pb(request.ttl, "ttl")
        )
        return pb.CreateTokenResponse(token=token, expires=convert.timestamp_to_pb(expires))

    @unary
    async def JoinAgent(
        self, request: pb.JoinAgentRequest, context: Context
    ) -> pb.JoinAgentResponse:
        # The join port has no caller; elsewhere the caller is known and locks apply to it.
        caller = None if self._caller_of is anonymous_caller else self._caller_of(context)
        issued = await self._service.join_agent(
            request.token, request.server_id, request.csr_pem, caller, context.peer()
        )
        return pb.JoinAgentResponse(
            certificate_pem=issued.certificate_pem,
            ca_certificate_pem=issued.ca_certificate_pem,
            not_after=convert.timestamp_to_pb(issued.not_after),
        )

    @unary
    async def RenewAgentCertificate(
        self, request: pb.RenewAgentCertificateRequest, context: Context
    ) -> pb.RenewAgentCertificateResponse:
        issued: IssuedCertificate = await self._service.renew_agent(
            self._caller_of(context), request.csr_pem
        )
        return pb.RenewAgentCertificateResponse(
            certificate_pem=issued.certificate_pem,
            not_after=convert.timestamp_to_pb(issued.not_after),
        )

"""From a validated config to started servers: the auth server and the node agent.

`start_auth_server` and `start_agent` are what `lockd start|auth|agent` run; the
benchmarks start the agent through the same function so they measure what ships.
"""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry

from lockd.agent.runtime import AgentRuntime
from lockd.auth.watch_stream import WatchSettings
from lockd.client.join import AgentIdentity, issue_local_agent_identity, join
from lockd.config import Config, resolve_server_id
from lockd.domain.errors import UnavailableError, ValidationError
from lockd.domain.ports import Clock
from lockd.obs.audit import AuditSink
from lockd.obs.metrics import AgentMetrics, AuthMetrics, GrpcServerMetrics
from lockd.runtime.agent_app import AgentApp, AgentSettings
from lockd.runtime.auth_app import AuthApp, AuthServerSettings, TlsSettings
from lockd.store import build_store

_log = structlog.get_logger("lockd")


def auth_server_settings(config: Config) -> AuthServerSettings:
    auth = config.auth_service
    return AuthServerSettings(
        cluster_name=config.cluster_name,
        listen_addr=auth.listen_addr,
        admin_socket=auth.admin_socket,
        static_locking_mode=auth.authentication.locking_mode,
        watch=WatchSettings(
            heartbeat_interval=auth.heartbeat_interval,
            snapshot_bytes_in_flight=auth.snapshot_bytes_in_flight,
        ),
        preset_roles=True,
        watch_workers=auth.watch_workers,
        log_format=config.log.format,
        log_level=config.log.level,
        tls=None
        if auth.insecure
        else TlsSettings(
            ca_dir=config.data_dir, join_listen_addr=auth.join_listen_addr, hosts=auth.tls_names
        ),
    )


async def start_auth_server(
    config: Config, clock: Clock, audit: AuditSink, registry: CollectorRegistry
) -> AuthApp:
    storage = config.auth_service.storage
    return await AuthApp.start(
        auth_server_settings(config),
        build_store(storage.type, storage.path, storage.postgres),
        clock,
        audit,
        AuthMetrics(registry),
        GrpcServerMetrics(registry),
    )


async def agent_identity(
    config: Config, local_auth: AuthApp | None, clock: Clock
) -> AgentIdentity | None:
    """The agent's certificate: from the local CA (embedded), the data dir, or a join.

    None means plaintext: the local auth server is insecure, or the agent is configured
    `insecure` for a dev cluster.
    """
    agent = config.agent_service
    if local_auth is not None:
        if local_auth.ca is None:
            return None
        return issue_local_agent_identity(local_auth.ca, resolve_server_id(config), clock.now())
    if agent.insecure:
        return None
    stored = AgentIdentity.load(config.data_dir)
    if stored is not None and stored.valid_at(clock.now()):
        return stored
    if stored is not None:
        _log.warning("the stored agent certificate has expired; joining again")
    if not agent.join_token or not agent.ca_pin:
        raise ValidationError(
            "agent_service.join_token and agent_service.ca_pin are needed to join the "
            "cluster (`lockctl tokens add --type=agent` prints both), or set "
            "agent_service.insecure for a plaintext development cluster"
        )
    failures = []
    for address in agent.join_servers:
        try:
            identity = await join(
                address, agent.join_token, resolve_server_id(config), agent.ca_pin
            )
        except (UnavailableError, OSError) as error:
            failures.append(f"{address}: {error}")
            continue
        identity.save(config.data_dir)
        return identity
    raise UnavailableError("could not join through any join server: " + "; ".join(failures))


def agent_settings(config: Config) -> AgentSettings:
    agent = config.agent_service
    return AgentSettings(
        cluster_name=config.cluster_name,
        server_id=resolve_server_id(config),
        auth_servers=agent.auth_servers,
        socket=agent.socket,
        socket_mode=agent.socket_mode,
        max_staleness=agent.max_staleness,
        locking_floor=agent.locking_mode,
        data_dir=config.data_dir,
    )


async def start_agent(
    config: Config,
    clock: Clock,
    audit: AuditSink,
    registry: CollectorRegistry,
    identity: AgentIdentity | None,
    runtime_class: type[AgentRuntime] = AgentRuntime,
) -> AgentApp:
    return await AgentApp.start(
        agent_settings(config),
        clock,
        audit,
        AgentMetrics(registry),
        GrpcServerMetrics(registry),
        identity,
        runtime_class,
    )

"""MFA device, trusted device and access request locks on proxy sessions (issue 14).

The X.509 user certificate names them (subject attributes, `lockd.pki`): SignUserIdentity
refuses to issue one while a lock on any of them is in force, and the proxy reads them
from the certificate, so those locks refuse and end PostgreSQL sessions (a real server,
asyncpg, the in-process auth server and agent).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from lockd.domain.errors import AccessDeniedError
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.ports import PutMode
from lockd.domain.resources import User
from lockd.pki import DeviceAttributes, make_csr, new_key
from lockd.proxy.cert_identity import identity_from_certificate
from lockd.testing import MemoryStore
from tests.agent.helpers import Cluster
from tests.postgres_server import PostgresDatabase, PostgresServer
from tests.proxy.conftest import StartProxy
from tests.proxy.helpers import Certificates, asyncpg_connect, postgres_listener
from tests.proxy.test_postgres_proxy import sessions_on_agent, upstream_socket
from tests.security.helpers import SecureCluster
from tests.support import WAIT

ATTRIBUTES = DeviceAttributes(mfa_device="key-3", device="laptop-7", access_requests=("req-42",))
TARGETS = (
    (LockTarget(mfa_device="key-3"), 'MFADevice:"key-3"'),
    (LockTarget(device="laptop-7"), 'Device:"laptop-7"'),
    (LockTarget(access_request="req-42"), 'AccessRequest:"req-42"'),
)


@pytest.fixture
async def secure(tmp_path: Path, socket_dir: Path) -> AsyncIterator[SecureCluster]:
    manager = SecureCluster(tmp_path / "secure", socket_dir, MemoryStore)
    try:
        await manager.start()
        await manager.seed_roles()
        yield manager
    finally:
        await manager.stop()


async def test_a_certificate_names_its_devices_and_is_refused_while_one_is_locked(
    secure: SecureCluster,
) -> None:
    """Each of the three attributes asked for in the CSR: a lock on it refuses the signing
    with the lock's message; unlocked, the certificate names all three and is audited."""
    admin = secure.admin()
    await admin.put_user(User("alice", ("dev",)), PutMode.UPSERT)
    csr = make_csr(new_key(), "alice", ATTRIBUTES)
    for target, named in TARGETS:
        await admin.create_lock(Lock("l1", target, message="stolen laptop"))
        with pytest.raises(AccessDeniedError) as refused:
            await admin.sign_user_identity("alice", timedelta(hours=1), csr)
        assert str(refused.value) == f"lock targeting {named} is in force: stolen laptop"
        await admin.delete_lock("l1")
    assert not secure.audit.of("identity.signed")
    signed = await admin.sign_user_identity("alice", timedelta(hours=1), csr)
    der = x509.load_pem_x509_certificate(signed.certificate_pem).public_bytes(Encoding.DER)
    identity = identity_from_certificate(der, login="app")
    assert (identity.user, identity.roles, identity.login) == ("alice", ("dev",), "app")
    assert (identity.mfa_device, identity.device) == ("key-3", "laptop-7")
    assert identity.access_requests == ("req-42",)
    fields = secure.audit.of("identity.signed")[-1].fields
    assert (fields["mfa_device"], fields["device"]) == ("key-3", "laptop-7")
    assert fields["access_requests"] == ["req-42"]


async def test_device_and_access_request_locks_end_and_refuse_only_the_sessions_they_name(
    start_proxy: StartProxy,
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
) -> None:
    """Three users, each certificate naming one attribute: each lock ends exactly the
    connection of the certificate that names its target, with the lock's message, and
    refuses that certificate's new connections; the others keep running."""
    proxy = await start_proxy(postgres_listener(upstream_socket(postgres_server)))
    port = proxy.listener("pg").port
    users = {
        "mia": DeviceAttributes(mfa_device="key-3"),
        "dan": DeviceAttributes(device="laptop-7"),
        "ria": DeviceAttributes(access_requests=("req-9", "req-42")),
    }
    files = {name: await certs.user(name, attributes=held) for name, held in users.items()}
    connections = {
        name: await asyncpg_connect(port, postgres_db.name, files[name], user=name)
        for name in users
    }
    try:
        queries = {
            name: asyncio.create_task(connection.fetchval("SELECT pg_sleep(120)"))
            for name, connection in connections.items()
        }
        await sessions_on_agent(cluster, 3)
        for (target, named), name in zip(TARGETS, users, strict=True):
            message = f"lock targeting {named} is in force: Device lost."
            await cluster.auth.client().create_lock(
                Lock(f"lock-{name}", target, message="Device lost.")
            )
            with pytest.raises(asyncpg.PostgresError) as raised:
                async with asyncio.timeout(WAIT):
                    await queries[name]
            assert str(raised.value).endswith(message)
            with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match=message):
                await asyncpg_connect(port, postgres_db.name, files[name], user=name)
            still = [other for other, query in queries.items() if not query.done()]
            assert len(still) == len(users) - 1 - list(users).index(name)
    finally:
        for connection in connections.values():
            connection.terminate()

"""docs/proxy.md's walkthrough with real processes: `lockd start`, `lockctl users add`,
`lockctl auth sign --format=db`, `lockd proxy server-cert`, `lockd proxy`, psql, and
`lockctl lock` ending the live psql session with the lock's message."""

from __future__ import annotations

import asyncio
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from lockd.pki import identity_of
from lockd.proxy.proxy_config import ProxyTlsConfig
from tests.postgres_server import PostgresDatabase, PostgresServer
from tests.proxy.helpers import PSQL, ClientFiles, conninfo, psql, start_psql, write_proxy_yaml
from tests.proxy.lockd_process import BIN, LockdProcess, lockd_start, run
from tests.support import WAIT, eventually, free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(PSQL is None, reason="psql is not installed")]


@pytest.fixture
async def lockd(tmp_path: Path, socket_dir: Path) -> AsyncIterator[LockdProcess]:
    async with lockd_start(tmp_path, socket_dir, cluster="walk.lockd") as process:
        yield process


async def test_the_psql_walkthrough_from_signing_to_a_lock_ending_the_session(
    lockd: LockdProcess,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    tmp_path: Path,
) -> None:
    """Every command of the walkthrough, in order, as an operator runs them."""
    config = str(lockd.config)
    role = tmp_path / "dev.yaml"
    role.write_text("kind: role\nversion: v5\nmetadata:\n  name: dev\nspec: {}\n")
    code, _, err = await run("lockctl", "-c", config, "create", "-f", str(role))
    assert code == 0, err
    code, _, err = await run("lockctl", "-c", config, "users", "add", "alice", "--roles=dev")
    assert code == 0, err
    code, out, err = await run(
        "lockctl",
        "-c",
        config,
        "auth",
        "sign",
        "--format=db",
        "--user=alice",
        "--device=laptop-7",
        f"--out={tmp_path / 'alice'}",
    )
    assert code == 0, err
    assert 'The database client files for user "alice" (roles: dev)' in out
    files = ClientFiles(tmp_path / "alice.key", tmp_path / "alice.crt", tmp_path / "alice.cas")
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    named = identity_of(x509.load_pem_x509_certificate(files.cert.read_bytes()))
    assert (named.name, named.roles, named.attributes.device) == ("alice", ("dev",), "laptop-7")
    code, out, err = await run(
        "lockd",
        "proxy",
        "server-cert",
        "-c",
        config,
        "--host=127.0.0.1",
        f"--out={tmp_path / 'proxy'}",
    )
    assert code == 0, err
    port = free_port()
    socket = postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}"
    tls = ProxyTlsConfig(tmp_path / "proxy.crt", tmp_path / "proxy.key", lockd.data_dir / "ca.crt")
    proxy_yaml = write_proxy_yaml(tmp_path / "proxy.yaml", lockd.agent_socket, tls, port, socket)
    with (tmp_path / "proxy.log").open("wb") as log:
        proxy = await asyncio.create_subprocess_exec(
            str(BIN / "lockd"), "proxy", "--config", str(proxy_yaml), stdout=log, stderr=log
        )
    try:
        info = conninfo(port, postgres_db.name, files)

        async def answers() -> bool:
            return (await psql(info, "SELECT 1")).stdout.strip() == "1"

        await eventually(answers, within=WAIT * 2, interval=0.5, what="psql via lockd proxy")
        session = await start_psql(info, "SELECT pg_sleep(120)")
        await asyncio.sleep(0.5)  # psql is connected and waiting on its query
        code, _, err = await run(
            "lockctl", "-c", config, "lock", "--user=alice", "--message=Suspicious activity."
        )
        assert code == 0, err
        async with asyncio.timeout(WAIT):
            _, psql_err = await session.communicate()
        expected = 'FATAL:  lock targeting User:"alice" is in force: Suspicious activity.'
        assert expected in psql_err.decode()
        refused = await psql(info, "SELECT 1")
        assert expected in refused.stderr
        proxy.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            assert await proxy.wait() == 0
    finally:
        if proxy.returncode is None:
            proxy.kill()
            await proxy.wait()


async def test_device_attributes_are_refused_for_an_identity_file(tmp_path: Path) -> None:
    """The auth server takes a caller's identity from user and roles only, so an identity
    file naming devices or access requests would promise locks it cannot keep."""
    out = f"--out={tmp_path / 'alice.pem'}"
    refusals = {
        "--device=laptop-7": "--mfa-device and --device apply to --format=openssh and db",
        "--access-request=req-42": "--access-request applies to --format=db only",
    }
    for flag, text in refusals.items():
        code, _, err = await run("lockctl", "auth", "sign", "--user=alice", flag, out)
        assert (code, text in err) == (2, True), err

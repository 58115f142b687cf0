"""`lockd proxy --config FILE` as a real process: config errors, serving psql, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.agent.helpers import Cluster
from tests.postgres_server import PostgresDatabase, PostgresServer
from tests.proxy.helpers import PSQL, Certificates, conninfo, psql, write_proxy_yaml
from tests.support import WAIT, eventually, free_port

pytestmark = pytest.mark.slow

LOCKD = Path(sys.executable).with_name("lockd")


async def run_lockd(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(LOCKD), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(WAIT * 3):
        _, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_a_config_error_names_the_file_and_key_and_exits_2(tmp_path: Path) -> None:
    """A typo is refused before anything starts."""
    config = tmp_path / "proxy.yaml"
    config.write_text("agent_sockett: /x\n")
    code, err = await run_lockd("proxy", "--config", str(config))
    assert code == 2
    assert f'ERROR: {config}: agent_sockett: unknown key; did you mean "agent_socket"?' in err


@pytest.mark.skipif(PSQL is None, reason="psql is not installed")
async def test_the_proxy_process_serves_psql_and_stops_cleanly_on_sigterm(
    cluster: Cluster,
    certs: Certificates,
    postgres_server: PostgresServer,
    postgres_db: PostgresDatabase,
    tmp_path: Path,
) -> None:
    """The documented config shape works end to end; SIGTERM exits 0."""
    tls = await certs.server()
    port = free_port()
    socket = postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}"
    config = write_proxy_yaml(tmp_path / "proxy.yaml", cluster.agents[-1].socket, tls, port, socket)
    log = tmp_path / "proxy.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(LOCKD), "proxy", "--config", str(config), stdout=out, stderr=out
        )
    try:
        alice = await certs.user("alice")

        async def answers() -> bool:
            result = await psql(conninfo(port, postgres_db.name, alice), "SELECT 7")
            return result.stdout.strip() == "7"

        await eventually(answers, within=WAIT * 2, interval=0.5, what="psql via lockd proxy")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            assert await process.wait() == 0, log.read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

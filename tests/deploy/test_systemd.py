"""deploy/systemd checked by systemd's own tools, and MemoryDenyWriteExecute tried out.

`systemd-analyze verify` and `systemd-analyze security --offline=true` read the units;
`systemd-sysusers` and `systemd-tmpfiles` apply the sysusers.d and tmpfiles.d files to a
scratch root directory. systemd does not run as PID 1 here, so MemoryDenyWriteExecute is
tried with the kernel mechanism behind it (prctl PR_SET_MDWE): the real daemon, with TLS,
a new cluster CA and an agent syncing over mTLS, runs under it.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.lockd_process import LOCKD, running_lockd
from tests.deploy.tools import DEPLOY, run, tool
from tests.support import free_port, http_get

SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
MAX_EXPOSURE = 2.0
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def test_both_daemons_have_a_unit() -> None:
    """The auth server and the agent each ship a unit."""
    assert [unit.name for unit in UNITS] == ["lockd-agent.service", "lockd-auth.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_the_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing to report (ExecStart pointed at this lockd,
    since /usr/local/bin/lockd is where a system install puts it, not this checkout)."""
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/usr/local/bin/lockd", str(LOCKD)))
    result = run([tool("systemd-analyze"), "verify", str(copy)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_the_unit_exposure_score_is_at_most_two(unit: Path) -> None:
    """`systemd-analyze security --offline=true` rates the unit 2.0 or better."""
    result = run([tool("systemd-analyze"), "security", "--offline=true", "--no-pager", str(unit)])
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_the_unit_waits_for_readiness_and_has_a_watchdog(unit: Path) -> None:
    """Type=notify (lockd sends READY=1) with a watchdog, as the daemon implements."""
    text = unit.read_text()
    assert "\nType=notify\n" in text
    assert "\nNotifyAccess=main\n" in text
    assert re.search(r"\nWatchdogSec=\d+", text)


def test_sysusers_and_tmpfiles_make_the_user_and_directories(tmp_path: Path) -> None:
    """systemd-sysusers creates user and group lockd; systemd-tmpfiles the three
    directories with the modes the units use, owned by that user."""
    (tmp_path / "etc").mkdir()
    for command in (
        [tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSTEMD / "lockd.sysusers")],
        [
            tool("systemd-tmpfiles"),
            f"--root={tmp_path}",
            "--create",
            str(SYSTEMD / "lockd.tmpfiles"),
        ],
    ):
        result = run(command)
        assert result.returncode == 0, result.stdout + result.stderr
    users = {
        line.split(":")[0]: line.split(":")
        for line in (tmp_path / "etc/passwd").read_text().splitlines()
    }
    assert users["lockd"][6] == "/usr/sbin/nologin"
    uid = int(users["lockd"][2])
    assert "lockd" in (tmp_path / "etc/group").read_text()
    for path, mode in (("var/lib/lockd", 0o700), ("run/lockd", 0o750), ("var/log/lockd", 0o700)):
        info = (tmp_path / path).stat()
        assert (info.st_uid, info.st_mode & 0o777) == (uid, mode), path


def _refuse_exec_gain() -> None:
    """In the child before exec: what MemoryDenyWriteExecute=yes asks of the kernel."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def _mdwe_supported() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "pass"],
        preexec_fn=_refuse_exec_gain,
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def test_writable_executable_memory_is_refused_under_the_mdwe_mechanism() -> None:
    """The mechanism is really on in the child: a W+X mapping fails there."""
    if not _mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or later)")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)",
        ],
        preexec_fn=_refuse_exec_gain,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "PermissionError" in result.stderr


def _synced(port: int) -> bool:
    body = http_get(f"http://127.0.0.1:{port}/metrics")[1]
    return 'lockd_agent_state{state="synced"} 1.0' in body


def test_lockd_with_tls_and_an_agent_runs_without_writable_executable_memory(
    socket_dir: Path,
) -> None:
    """grpcio and cryptography survive MemoryDenyWriteExecute: `lockd start` makes its CA,
    serves mTLS and its agent syncs over it, all under PR_SET_MDWE."""
    if not _mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or later)")
    listen, agent_metrics = f"127.0.0.1:{free_port()}", free_port()
    config = socket_dir / "lockd.yaml"
    config.write_text(
        f"""
cluster_name: mdwe.test
data_dir: {socket_dir / "data"}
log: {{format: json, level: info}}
auth_service:
  enabled: true
  listen_addr: {listen}
  join_listen_addr: 127.0.0.1:{free_port()}
  metrics_addr: ""
agent_service:
  enabled: true
  auth_servers: [{listen}]
  socket: {socket_dir / "agent.sock"}
  metrics_addr: 127.0.0.1:{agent_metrics}
"""
    )
    with running_lockd(
        ["start", "--config", str(config)], socket_dir / "lockd.log", preexec_fn=_refuse_exec_gain
    ) as lockd:
        lockd.wait_until(lambda: _synced(agent_metrics), "the agent to sync over mTLS")
        assert lockd.stop() == 0, lockd.log()

"""`lockd bench` smoke tests: every scenario at tiny sizes, through the real command.

Each runs `lockd bench SCENARIO ... --json` in a subprocess and checks that it exits 0
and prints one valid JSON object per scenario with the documented fields
(docs/benchmarks.md). No timing is asserted: figures from a loaded CI machine mean
nothing. One test interrupts a run and checks that nothing is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RUN_TIMEOUT = 90

LATENCY = ("p50_ms", "p99_ms", "max_ms")
FAN_OUT = (
    *(f"last_{key}" for key in LATENCY),
    *(f"first_{key}" for key in LATENCY),
    "server_cpu_s",
    "server_cpu_ms_per_lock",
    "agents_cpu_s",
    "sync_all_s",
    "server_rss_mb",
    "server_rss_idle_mb",
    "rss_per_stream_kb",
    "agents_rss_mb",
)
FIELDS = {
    "baseline": FAN_OUT,
    "etcd": FAN_OUT,
    "propagation": (
        *FAN_OUT,
        "vs_baseline_last_p99",
        "vs_baseline_last_p50",
        *(f"confirmed_{key}" for key in LATENCY),
        *(f"waited_last_{key}" for key in LATENCY),
    ),
    "terminate": (
        *(f"session_{key}" for key in LATENCY),
        *(f"all_{key}" for key in LATENCY),
        *(f"create_to_all_{key}" for key in LATENCY),
        "agent_cpu_s",
        "agent_rss_mb",
        "agent_rss_idle_mb",
        "agent_rss_end_mb",
        "register_all_s",
        "floor_session_p99_ms",
        "floor_all_p50_ms",
        "floor_all_p99_ms",
        "floor_server_rss_mb",
        "vs_floor_all_p99",
    ),
    "check": (
        "inprocess_checks_per_s",
        "inprocess_decide_per_s",
        "socket_checks_per_s",
        "socket_p50_ms",
        "socket_p99_ms",
        "socket_agent_cpu_s",
        "bare_checks_per_s",
        "bare_p50_ms",
        "bare_p99_ms",
        "bare_server_cpu_s",
        "socket_vs_bare",
        "sidecar_local_checks_per_s",
        "sidecar_view_load_s",
    ),
    "check-under-load": (
        "idle_checks_per_s",
        "idle_p50_ms",
        "idle_p99_ms",
        "loaded_checks_per_s",
        "loaded_p50_ms",
        "loaded_p99_ms",
        "creates_per_s",
        "p99_vs_idle",
        "agent_cpu_idle_s",
        "agent_cpu_loaded_s",
    ),
    "create": (*(f"create_{key}" for key in LATENCY), "creates_per_s", "server_cpu_ms_per_create"),
    "reconnect": ("restart_s", "resync_all_s", "total_s", "resumed_share", "snapshots"),
    # The figures issue 17's targets are read from.
    "agent-apply": ("event_us", "snapshot_us_per_lock", "rss_mb", "rss_per_lock_b", "view_locks"),
    "snapshot": (
        *(f"synced_{key}" for key in LATENCY),
        "all_synced_s",
        "server_cpu_s",
        "server_rss_mb",
        "agents_rss_mb",
        "rss_per_agent_kb",
        "agents_cpu_s",
    ),
}


def bench(tmp_path: Path, *args: str, timeout: float = RUN_TIMEOUT) -> list[dict[str, object]]:
    """Run `lockd bench ARGS --json`; the JSON objects it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "lockd", "bench", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob("lockd-bench-*")), "the temporary directory was left"
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def check_fields(
    result: dict[str, object], scenario: str, fields: tuple[str, ...] | None = None
) -> dict[str, object]:
    assert result["scenario"] == scenario
    expected = FIELDS[scenario] if fields is None else fields
    assert isinstance(result["params"], dict)
    assert isinstance(result["notes"], list)
    figures = result["results"]
    assert isinstance(figures, dict)
    missing = [key for key in expected if key not in figures]
    assert not missing, f"{scenario} lacks {missing}"
    for key in expected:
        assert isinstance(figures[key], int | float), f"{scenario}.{key} = {figures[key]!r}"
    return figures


def test_propagation_with_baseline(tmp_path: Path) -> None:
    """propagation --with-baseline runs the bare grpc.aio floor and lockd in one invocation and
    reports both, with the ratio, and lockd's `lock --wait` series (confirmed)."""
    results = bench(
        tmp_path, "propagation", "--agents", "6", "--procs", "2", "--locks", "3",
        "--warmup", "1", "--gap", "0", "--with-baseline", "--store", "memory",
    )  # fmt: skip
    assert [result["scenario"] for result in results] == ["baseline", "propagation"]
    check_fields(results[0], "baseline")
    figures = check_fields(results[1], "propagation")
    assert results[1]["params"] == {
        "agents": 6, "locks": 3, "procs": 2, "store": "memory", "light": False,
    }  # fmt: skip
    assert float(figures["last_p50_ms"]) >= float(figures["first_p50_ms"])  # type: ignore[arg-type]


def test_baseline_with_floor_work_spends_that_cpu_on_every_frame(tmp_path: Path) -> None:
    """baseline --floor-work US has the bare floor's watchers spend US µs of CPU on each
    frame they read: their CPU over the run is at least that for every frame; a negative
    figure is a usage error before anything starts."""
    (result,) = bench(
        tmp_path, "baseline", "--agents", "4", "--procs", "2", "--locks", "3",
        "--warmup", "1", "--gap", "0", "--floor-work", "20000",
    )  # fmt: skip
    figures = check_fields(result, "baseline")
    assert result["params"] == {"agents": 4, "locks": 3, "procs": 2, "floor_work_us": 20000.0}
    assert float(figures["agents_cpu_s"]) >= 4 * (1 + 3) * 0.020 * 0.95  # type: ignore[arg-type]
    refused = subprocess.run(
        [sys.executable, "-m", "lockd", "bench", "baseline", "--floor-work", "-1"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--floor-work is µs of CPU per frame" in refused.stderr


@pytest.mark.skipif(
    shutil.which("etcd") is None,
    reason="etcd is not installed (Debian's etcd-server: `make system-deps` as root)",
)
def test_propagation_with_etcd_peer(tmp_path: Path) -> None:
    """propagation --peer etcd runs the same fan-out on a throwaway etcd first, reports its
    figures and lockd's ratio to them, and leaves no etcd process behind."""
    results = bench(
        tmp_path, "propagation", "--agents", "6", "--procs", "2", "--locks", "3",
        "--warmup", "1", "--gap", "0", "--peer", "etcd", "--store", "memory",
    )  # fmt: skip
    assert [result["scenario"] for result in results] == ["etcd", "propagation"]
    check_fields(results[0], "etcd")
    check_fields(results[1], "propagation", (*FAN_OUT, "vs_etcd_last_p99", "vs_etcd_last_p50"))
    assert not _running_in(tmp_path), "a process of the run (etcd's data is there) survived it"


def test_propagation_with_light_clients(tmp_path: Path) -> None:
    """propagation --light measures minimal WatchLocks clients and reports no baseline ratio."""
    (result,) = bench(
        tmp_path, "propagation", "--agents", "4", "--procs", "1", "--locks", "2",
        "--warmup", "1", "--gap", "0", "--light",
    )  # fmt: skip
    check_fields(result, "propagation", FAN_OUT)  # no baseline: no ratio
    assert result["params"]["light"] is True  # type: ignore[index]


def test_terminate(tmp_path: Path) -> None:
    """terminate runs lockd and its bare baseline and reports every figure it promises."""
    (result,) = bench(
        tmp_path, "terminate", "--sessions", "20", "--matching", "4", "--rounds", "2",
        "--locks", "30", "--procs", "2", "--with-baseline",
    )  # fmt: skip
    check_fields(result, "terminate")


def test_check(tmp_path: Path) -> None:
    """check measures CheckAccess over the agent's socket and reports a positive rate."""
    (result,) = bench(
        tmp_path, "check", "--locks", "50", "--concurrency", "4", "--seconds", "0.5",
        "--warmup", "0.1",
    )  # fmt: skip
    figures = check_fields(result, "check")
    assert float(figures["socket_checks_per_s"]) > 0  # type: ignore[arg-type]


def test_check_under_load(tmp_path: Path) -> None:
    """check-under-load reports check latency idle and while locks are being created."""
    (result,) = bench(
        tmp_path, "check-under-load", "--locks", "50", "--concurrency", "4", "--seconds",
        "0.5", "--warmup", "0.1", "--rate", "20", "--writers", "2",
    )  # fmt: skip
    figures = check_fields(result, "check-under-load")
    assert float(figures["creates_per_s"]) > 0  # type: ignore[arg-type]


def test_create(tmp_path: Path) -> None:
    """create measures CreateLock latency on the default SQLite store and echoes its params."""
    (result,) = bench(tmp_path, "create", "--locks", "5", "--warmup", "1")
    check_fields(result, "create")
    assert result["params"] == {"locks": 5, "store": "sqlite"}


def test_proxy(tmp_path: Path) -> None:
    """proxy closes PostgreSQL connections through `lockd proxy` with a lock, relays a COPY,
    and reports each figure with the load it was taken at."""
    from lockd.bench.pgserver import prerequisite_problem

    missing = prerequisite_problem()
    if missing is not None:
        pytest.skip(missing)
    args = ("--connections", "3", "--rounds", "1", "--copy-mb", "1", "--copy-runs", "1")
    (result,) = bench(tmp_path, "proxy", *args)
    latency = tuple(f"lock_to_closed_{key}" for key in LATENCY)
    copy = ("copy_direct_mib_per_s", "copy_proxy_mib_per_s", "copy_proxy_vs_direct")
    check_fields(result, "proxy", (*latency, "proxy_rss_mb", "load_1m", *copy))


def test_reconnect(tmp_path: Path) -> None:
    """reconnect reports the share of agents that resumed without a snapshot, between 0 and 1."""
    (result,) = bench(tmp_path, "reconnect", "--agents", "4", "--procs", "1")
    figures = check_fields(result, "reconnect")
    assert 0 <= float(figures["resumed_share"]) <= 1  # type: ignore[arg-type]


def test_targets_reports_each_target_with_its_limit_and_verdict(tmp_path: Path) -> None:
    """targets runs the floor, the etcd peer, both fleets, agent-apply and the cold starts
    in one invocation, then a verdict giving each target's figure, limit and whether it
    is met; a cold start of a shape the targets do not name has a figure and no verdict.
    With --rounds 2 all of it runs twice, and a median verdict ends the report."""
    results = bench(
        tmp_path, "targets", "--agents", "4", "--locks", "2", "--procs", "2",
        "--big-agents", "6", "--big-locks", "2", "--big-procs", "2",
        "--view-locks", "200", "--events", "50", "--cold", "2x20,3x10", "--rounds", "2",
        timeout=8 * RUN_TIMEOUT,
    )  # fmt: skip
    one_round = [
        "baseline", "etcd", "propagation", "propagation", "agent-apply",
        "snapshot", "snapshot", "targets",
    ]  # fmt: skip
    assert [result["scenario"] for result in results] == [*one_round, *one_round, "targets-median"]
    median = results[-1]["results"]
    assert isinstance(median, dict)
    assert results[-1]["params"]["rounds"] == 2  # type: ignore[index]
    assert median["event_us_min"] <= median["event_us"] <= median["event_us_max"]
    verdict = results[-2]["results"]
    assert isinstance(verdict, dict)
    for name in (
        "p99_vs_floor", "big_fleet_p99_ms", "confirmed_p99_ms",
        "agent_rss_mb", "rss_per_lock_b", "event_us", "cold_2x20_s", "cold_3x10_s",
    ):  # fmt: skip
        assert isinstance(verdict[name], int | float), (name, verdict[name])
    # A tiny floor may spend less CPU than /proc counts (10 ms ticks): no ratio then.
    assert "server_cpu_vs_floor_met" in verdict
    assert verdict["event_us_limit"] == 15.0
    assert isinstance(verdict["event_us_met"], bool)
    assert (verdict["cold_2x20_s_limit"], verdict["cold_2x20_s_met"]) == (None, None)


def test_agent_apply(tmp_path: Path) -> None:
    """agent-apply feeds one agent runtime a snapshot and event rounds in-process and
    reports its CPU per lock and its RSS; the view ends with every lock it was sent."""
    (result,) = bench(
        tmp_path, "agent-apply", "--locks", "200", "--events", "50", "--rounds", "2"
    )  # fmt: skip
    figures = check_fields(result, "agent-apply")
    assert figures["view_locks"] == 200 + 50 * 2


def test_snapshot(tmp_path: Path) -> None:
    """snapshot reports the cold-start figures of agents loading a snapshot."""
    (result,) = bench(tmp_path, "snapshot", "--agents", "4", "--locks", "20", "--procs", "1")
    check_fields(result, "snapshot")


def test_ssh(tmp_path: Path) -> None:
    """ssh ends real OpenSSH sessions under the guard with a lock and reports each figure."""
    from lockd.bench.sshd import why_no_sshd

    missing = why_no_sshd()
    if missing is not None:
        pytest.skip(missing)
    (result,) = bench(tmp_path, "ssh", "--sessions", "2", "--rounds", "1")
    latencies = ("guard_kill", "guard_end", "lock_to_disconnect", "create_to_last_disconnect")
    check_fields(result, "ssh", tuple(f"{name}_{key}" for name in latencies for key in LATENCY))


def test_table_output(tmp_path: Path) -> None:
    """Without --json the bench prints a readable table headed by the scenario and its params."""
    done = subprocess.run(
        [sys.executable, "-m", "lockd", "bench", "create", "--locks", "3",
         "--store", "memory"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "== create  locks=3 store=memory" in done.stdout
    assert "create_p99_ms" in done.stdout


def _running_in(directory: Path) -> list[int]:
    """Processes whose command line names a path under `directory`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        if str(directory) in text:
            found.append(int(cmdline.parent.name))
    return found


def _children(pid: int) -> set[int]:
    """Processes whose parent is `pid`."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(4 * RUN_TIMEOUT)
def test_ctrl_c_kills_every_child_and_removes_the_directory(tmp_path: Path) -> None:
    """SIGINT mid-run ends every child process of the bench and removes its temporary directory."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lockd", "bench", "propagation", "--agents", "4",
         "--procs", "2", "--locks", "100000", "--gap", "0.05", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    # Deadlines are generous: on a loaded 2-core machine starting the children and
    # tearing them down can take tens of seconds; only the outcome is asserted.
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        children: set[int] = set()
        while len(children) < 3:  # the auth server and two workers
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the bench did not start its children"
            children = _children(process.pid)
            time.sleep(0.1)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=RUN_TIMEOUT)
        assert process.returncode == 130, stderr
        assert b"interrupted" in stderr
        deadline = time.monotonic() + RUN_TIMEOUT
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, "children survived the interrupt"
            time.sleep(0.1)
        assert not list(tmp_path.glob("lockd-bench-*"))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # reaps it and closes the pipe, even after a failure

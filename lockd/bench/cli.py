"""`lockd bench SCENARIO [options] [--json]`: parse, run, print, clean up.

Each scenario prints a table (a heading with its parameters, then one figure per line)
or, with `--json`, one JSON object per scenario on stdout. Progress goes to stderr.
Whatever happens — an error, Ctrl-C, SIGTERM — every child process is killed and the
temporary directory removed (`--keep` keeps the directory, for its logs).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from lockd.bench.procs import Reaper, raise_nofile
from lockd.bench.report import Result, render_table
from lockd.bench.scenarios.agent_apply import ApplyParams, agent_apply
from lockd.bench.scenarios.check import CheckParams, check
from lockd.bench.scenarios.check_under_load import LoadParams, check_under_load
from lockd.bench.scenarios.common import Common
from lockd.bench.scenarios.create_latency import CreateParams, create
from lockd.bench.scenarios.failover import FailoverParams, failover
from lockd.bench.scenarios.propagation import FanOutParams, baseline, compare, etcd, propagation
from lockd.bench.scenarios.proxy_bench import ProxyParams, proxy
from lockd.bench.scenarios.replica_launch import check_replicas
from lockd.bench.scenarios.resync import ResyncParams, reconnect, snapshot
from lockd.bench.scenarios.ssh_bench import SSHParams, ssh
from lockd.bench.scenarios.targets import TargetParams, targets
from lockd.bench.scenarios.terminate import TerminateParams, terminate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockd bench",
        description="Measure lockd on this machine: a real `lockd auth` subprocess, real "
        "agent code in worker processes, bare grpc.aio servers as transport floors.",
        epilog="Example: lockd bench propagation --agents 1000 --procs 2 --with-baseline",
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")

    def scenario(name: str, text: str) -> argparse.ArgumentParser:
        command = scenarios.add_parser(name, help=text, description=text)
        command.add_argument("--json", action="store_true", help="one JSON object per scenario")
        command.add_argument(
            "--store",
            choices=("sqlite", "memory", "postgres"),
            default="sqlite",
            help="auth server store (postgres: a throwaway server made with initdb)",
        )
        command.add_argument(
            "--heartbeat", default="5s", help="auth heartbeat_interval (default 5s)"
        )
        command.add_argument(
            "--keep", action="store_true", help="keep the temporary directory (logs)"
        )
        return command

    for name, text in (
        ("propagation", "time from CreateLock to the first and last of N agents applying it"),
        ("baseline", "the same fan-out over a bare grpc.aio server (transport floor)"),
    ):
        command = scenario(name, text)
        _fleet_options(command, "", 100, 50, 2, "agents (streams)")
        command.add_argument("--warmup", type=int, default=3, help="unmeasured locks first")
        command.add_argument(
            "--gap",
            type=float,
            default=None,
            help="seconds between one lock being everywhere and the next CreateLock "
            "(default: 0.2 + 0.1 ms per agent, so that each fan-out is measured on its own)",
        )
        command.add_argument(
            "--floor-work",
            type=float,
            default=0.0,
            metavar="US",
            help="CPU the bare floor's watchers spend on each frame, in µs (e.g. what a "
            "lockd agent spends: its agents' CPU over their frames), so that the floor's "
            "server shares the cores as lockd's does (default 0)",
        )
        if name == "propagation":
            command.add_argument(
                "--with-baseline", action="store_true", help="run baseline too, and compare"
            )
            command.add_argument(
                "--light",
                action="store_true",
                help="minimal clients instead of real agents (the auth server's share alone)",
            )
            command.add_argument(
                "--watch-workers",
                type=_counts,
                default=(1,),
                metavar="N[,N...]",
                help="auth_service.watch_workers: one run per count, e.g. 1,2,4 (default 1)",
            )
            command.add_argument(
                "--replicas",
                type=int,
                default=1,
                help="2+: also a run on N auth replicas (--store postgres), locks created on "
                "the first, agents spread over all, compared with the one-replica run",
            )
            command.add_argument(
                "--peer",
                choices=("etcd",),
                default=None,
                help="also run the same fan-out on a throwaway local etcd, and compare",
            )

    command = scenario("terminate", "from a lock event's arrival to every hit session ending")
    command.add_argument("--sessions", type=int, default=1000, help="sessions registered")
    command.add_argument("--matching", type=int, default=100, help="sessions the lock hits")
    command.add_argument("--rounds", type=int, default=5, help="locks, one per round")
    command.add_argument("--locks", type=int, default=0, help="background locks in the view")
    command.add_argument(
        "--procs", type=int, default=2, help="sidecar processes (one channel each)"
    )
    command.add_argument(
        "--with-baseline", action="store_true", help="the same rounds on a bare gRPC server"
    )

    command = scenario("proxy", "PostgreSQL through lockd proxy: a lock closing N connections")
    command.add_argument("--connections", type=int, default=1000, help="connections per round")
    command.add_argument("--rounds", type=int, default=3, help="locks, one per round")
    command.add_argument("--copy-mb", type=int, default=200, help="MiB per COPY for throughput")
    command.add_argument("--copy-runs", type=int, default=3, help="COPY runs (best counts)")

    command = scenario("ssh", "real sshd and ssh clients: a lock ending N SSH sessions")
    command.add_argument("--sessions", type=int, default=50, help="SSH sessions per round")
    command.add_argument("--rounds", type=int, default=3, help="locks, one per round")

    command = scenario("check", "CheckAccess over the Unix socket (vs bare gRPC) and in-process")
    command.add_argument("--locks", type=int, default=1000, help="locks in the agent's view")
    command.add_argument("--concurrency", type=int, default=50, help="calls in flight")
    command.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    command.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    command.add_argument("--procs", type=int, default=1, help="checker processes")

    command = scenario(
        "check-under-load", "CheckAccess p99 while locks are created at a fixed rate, vs idle"
    )
    command.add_argument("--locks", type=int, default=1000, help="locks in the agent's view")
    command.add_argument("--concurrency", type=int, default=20, help="checks in flight")
    command.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    command.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    command.add_argument("--rate", type=float, default=200.0, help="creates per second")
    command.add_argument("--writers", type=int, default=8, help="concurrent creators")

    command = scenario("create", "durable CreateLock latency, one call at a time")
    command.add_argument("--locks", type=int, default=200, help="locks created")
    command.add_argument("--warmup", type=int, default=10, help="unmeasured creates first")
    command.add_argument(
        "--replicas", type=int, default=1, help="auth replicas (2+: --store postgres)"
    )

    command = scenario("failover", "SIGKILL the leading replica: agents SYNCED on a survivor")
    command.add_argument("--agents", type=int, default=100, help="agents (streams)")
    command.add_argument("--procs", type=int, default=2, help="agent worker processes")
    command.add_argument("--replicas", type=int, default=2, help="auth replicas (2+)")

    command = scenario("reconnect", "auth server restart: time until every agent is SYNCED")
    command.add_argument("--agents", type=int, default=100, help="agents (streams)")
    command.add_argument("--procs", type=int, default=2, help="agent worker processes")
    command.add_argument("--locks", type=int, default=0, help="locks in the store")

    command = scenario("targets", "every propagation target, with its floor and peer, met or not")
    _fleet_options(command, "", 1000, 100, 2, "agents of the main fleet")
    _fleet_options(command, "big-", 10_000, 20, 4, "agents of the large fleet")
    command.add_argument("--view-locks", type=int, default=100_000, help="agent-apply's locks")
    command.add_argument("--events", type=int, default=20_000, help="agent-apply's events")
    command.add_argument(
        "--cold",
        type=_shapes,
        default=((100, 10_000), (1000, 1000)),
        metavar="AxL[,AxL...]",
        help="cold starts: A agents against L locks (default 100x10000,1000x1000)",
    )
    command.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run everything this many times and end with each target's median (default 1)",
    )

    command = scenario("agent-apply", "an agent's Python per lock and its RSS, in-process")
    command.add_argument("--locks", type=int, default=100_000, help="locks in the snapshot")
    command.add_argument("--events", type=int, default=20_000, help="one-lock events per round")
    command.add_argument("--rounds", type=int, default=5, help="rounds of events (best counts)")

    command = scenario("snapshot", "cold start of N agents against L existing locks")
    command.add_argument("--agents", type=int, default=100, help="agents (streams)")
    command.add_argument("--locks", type=int, default=1000, help="locks in the store")
    command.add_argument("--procs", type=int, default=2, help="agent worker processes")
    return parser


def _fleet_options(
    command: argparse.ArgumentParser, prefix: str, agents: int, locks: int, procs: int, what: str
) -> None:
    """`--<prefix>agents`, `--<prefix>locks` (created one by one), `--<prefix>procs`."""
    command.add_argument(f"--{prefix}agents", type=int, default=agents, help=what)
    command.add_argument(
        f"--{prefix}locks", type=int, default=locks, help="locks created, one by one"
    )
    command.add_argument(f"--{prefix}procs", type=int, default=procs, help="agent worker processes")


def _common(args: argparse.Namespace) -> Common:
    return Common(args.store, args.heartbeat)


async def _fan_out(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    light = args.scenario == "propagation" and args.light
    params = FanOutParams(
        args.agents,
        args.locks,
        args.procs,
        args.warmup,
        args.gap,
        light,
        floor_work=args.floor_work,
    )
    if args.scenario == "baseline":
        return [await baseline(reaper, params)]
    results = []
    floor = None
    if args.with_baseline:
        floor = await baseline(reaper, params)
        results.append(floor)
    peer = None
    if args.peer == "etcd":
        peer = await etcd(reaper, params)
        results.append(peer)
    for count in args.watch_workers:
        common = dataclasses.replace(_common(args), watch_workers=count)
        ours = await propagation(reaper, params, common)
        if floor is not None:
            compare(ours, floor)
        if peer is not None:
            compare(ours, peer, "etcd")
        results.append(ours)
    if args.replicas > 1:
        spread = await propagation(
            reaper, dataclasses.replace(params, replicas=args.replicas), _common(args)
        )
        compare(spread, results[-1], "single_replica")
        results.append(spread)
    return results


def _check_arguments(args: argparse.Namespace) -> None:
    """ValueError for options that do not go together (before anything starts)."""
    if args.scenario in ("propagation", "baseline") and not args.floor_work >= 0:
        raise ValueError("--floor-work is µs of CPU per frame: 0 or more")
    if args.scenario == "propagation":
        check_replicas(_common(args), args.replicas)
        if args.replicas > 1 and args.watch_workers != (1,):
            raise ValueError("--replicas and --watch-workers do not combine (workers tail SQLite)")
    elif args.scenario == "targets" and args.rounds < 1:
        raise ValueError("--rounds is how many times everything runs: 1 or more")
    elif args.scenario == "failover":
        if args.replicas < 2:
            raise ValueError("failover needs --replicas 2 or more")
        check_replicas(_common(args), args.replicas)


def _shapes(text: str) -> tuple[tuple[int, int], ...]:
    """`100x10000,1000x1000`: (agents, locks) pairs, agents at least 1."""
    shapes = []
    for part in text.split(","):
        agents, x, locks = part.partition("x")
        if not (x and agents.isdigit() and locks.isdigit() and int(agents) >= 1):
            raise argparse.ArgumentTypeError(f"not AGENTSxLOCKS: {part!r}")
        shapes.append((int(agents), int(locks)))
    return tuple(shapes)


def _counts(text: str) -> tuple[int, ...]:
    """`1,2,4`: different whole numbers from 1 to 64."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers: {text!r}") from None
    if not all(1 <= count <= 64 for count in counts):
        raise argparse.ArgumentTypeError(f"each count must be from 1 to 64: {text!r}")
    if len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"a count is given twice: {text!r}")
    return counts


async def _terminate(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = TerminateParams(
        args.sessions, args.matching, args.rounds, args.locks, args.procs, args.with_baseline
    )
    return [await terminate(reaper, params, _common(args))]


async def _proxy(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = ProxyParams(args.connections, args.rounds, args.copy_mb, args.copy_runs)
    return [await proxy(reaper, params, _common(args))]


async def _ssh(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    return [await ssh(reaper, SSHParams(args.sessions, args.rounds), _common(args))]


async def _check(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = CheckParams(args.locks, args.concurrency, args.seconds, args.warmup, args.procs)
    return [await check(reaper, params, _common(args))]


async def _check_under_load(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = LoadParams(
        args.locks, args.concurrency, args.seconds, args.warmup, args.rate, args.writers
    )
    return [await check_under_load(reaper, params, _common(args))]


async def _create(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = CreateParams(args.locks, args.warmup, args.replicas)
    return [await create(reaper, params, _common(args))]


async def _failover(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = FailoverParams(args.agents, args.procs, args.replicas)
    return [await failover(reaper, params, _common(args))]


async def _resync(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = ResyncParams(args.agents, args.locks, args.procs)
    run = reconnect if args.scenario == "reconnect" else snapshot
    return [await run(reaper, params, _common(args))]


async def _targets(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    params = TargetParams(
        fleet=FanOutParams(args.agents, args.locks, args.procs),
        big_fleet=FanOutParams(args.big_agents, args.big_locks, args.big_procs),
        apply=ApplyParams(args.view_locks, args.events),
        cold=args.cold,
        rounds=args.rounds,
    )
    return await targets(reaper, params, _common(args))


async def _agent_apply(reaper: Reaper, args: argparse.Namespace) -> list[Result]:
    return [await agent_apply(reaper, ApplyParams(args.locks, args.events, args.rounds))]


Runner = Callable[[Reaper, argparse.Namespace], Awaitable[list[Result]]]
RUNNERS: dict[str, Runner] = {
    "propagation": _fan_out,
    "baseline": _fan_out,
    "terminate": _terminate,
    "check": _check,
    "ssh": _ssh,
    "check-under-load": _check_under_load,
    "proxy": _proxy,
    "create": _create,
    "failover": _failover,
    "reconnect": _resync,
    "snapshot": _resync,
    "agent-apply": _agent_apply,
    "targets": _targets,
}


async def _run(args: argparse.Namespace, reaper: Reaper) -> list[Result]:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    return await RUNNERS[args.scenario](reaper, args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_arguments(args)
    except ValueError as error:
        parser.error(str(error))
    raise_nofile()
    reaper = Reaper(keep=args.keep)
    try:
        results = asyncio.run(_run(args, reaper))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("lockd bench: interrupted; cleaning up", file=sys.stderr)
        return 130
    except Exception as error:
        print(f"lockd bench: {args.scenario} failed: {error}", file=sys.stderr)
        return 1
    finally:
        reaper.close()
        if args.keep:
            print(f"lockd bench: kept {reaper.workdir}", file=sys.stderr)
    for result in results:
        if args.json:
            print(result.to_json(), flush=True)
        else:
            render_table(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())

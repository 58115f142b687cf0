"""A benchmark worker process: `python -m lockd.bench.worker ROLE [options]`.

Started by the coordinator with its stdin and stdout as the wire (`lockd.bench.wire`).
It builds its role, sends `ready` (with whatever the coordinator needs to know, e.g. a
port), answers commands until its stdin closes, then stops its role and exits. Logs
(warnings and up) go to stderr.

Roles: `agents` (N real watching agents), `light-agents` (N minimal WatchLocks clients),
`etcd-watchers` (N watchers of a local etcd, the peer),
`bare-watchers` (N raw streams), `bare-fanout`,
`bare-unary` and `bare-sessions` (the transport floors), `agent-host` (one real node
agent), `sidecars` (sessions on the agent's socket), `checker` (CheckAccess load) and
`apply` (one agent runtime fed frames in-process).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from lockd.bench.procs import die_with_parent, raise_nofile
from lockd.bench.wire import ChildWire, Message
from lockd.obs.logging import configure_logging


class Role(Protocol):
    async def handle(self, command: Message) -> Message: ...

    async def stop(self) -> None: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lockd.bench.worker")
    parser.add_argument("role")
    parser.add_argument(
        "--auth", default="", help="auth server host:port (agents: a,b,... to list several)"
    )
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--dir", type=Path, default=Path("."))
    parser.add_argument("--socket", type=Path, default=Path("agent.sock"))
    parser.add_argument("--matching", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--work-us", type=float, default=0.0, help="bare-watchers: CPU per frame")
    return parser


async def build(args: argparse.Namespace) -> tuple[Role, Message]:
    """The role and the fields of its `ready` event."""
    from lockd.bench import apply_probe, bare, fleet, host  # the heavy imports, after the parse

    role = args.role
    if role == "agents":
        return fleet.AgentFleet(args.auth, args.count, args.prefix), {}
    if role == "light-agents":
        return fleet.LightFleet(args.auth, args.count, args.prefix), {}
    if role == "etcd-watchers":
        return fleet.EtcdFleet(args.auth, args.count, args.prefix), {}
    if role == "bare-watchers":
        return fleet.BareFleet(args.auth, args.count, args.work_us / 1e6), {}
    if role == "bare-fanout":
        fanout = bare.BareFanOut()
        await fanout.server.start()
        return fanout, {"port": fanout.port}
    if role == "bare-unary":
        unary = bare.BareUnary(args.socket)
        await unary.server.start()
        return unary, {}
    if role == "bare-sessions":
        sessions = bare.BareChannels(args.socket)
        await sessions.server.start()
        return sessions, {}
    if role == "agent-host":
        agent = host.AgentHost(args.auth, args.dir)
        await agent.start()
        return agent, {"socket": str(agent.socket)}
    if role == "sidecars":
        return host.Sidecars(args.socket, args.count, args.matching, args.prefix), {}
    if role == "checker":
        return host.Checker(args.concurrency), {}
    if role == "apply":
        return apply_probe.ApplyProbe(), {}
    raise SystemExit(f"unknown role {role!r}")


async def serve(args: argparse.Namespace) -> None:
    from lockd.runtime.gc_tuning import tune_gc

    wire = await ChildWire.open()
    role, ready = await build(args)
    tune_gc()  # as `lockd agent` does once started (the floors get the same)
    ChildWire.emit("ready", **ready)
    try:
        async for command in wire.commands():
            try:
                reply = await role.handle(command)
            except Exception as error:
                traceback.print_exc()
                reply = {"error": f"{type(error).__name__}: {error}"}
            ChildWire.emit("reply", id=command.get("id"), **reply)
    finally:
        await role.stop()


def main(argv: Sequence[str] | None = None) -> int:
    die_with_parent()
    args = build_parser().parse_args(argv)
    configure_logging("json", "warning")
    raise_nofile()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `lockd` console script: `lockd bench …`, `lockd ssh-session`, `lockd proxy` or a
daemon command (`lockd.daemon`).

Dispatching here keeps the daemon and the benchmarks apart: neither imports the other,
and a daemon start never loads the benchmark code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["bench"]:
        from lockd.bench.cli import main as bench  # its imports only when asked for

        return bench(arguments[1:])
    if arguments[:1] == ["ssh-session"]:
        from lockd.ssh.ssh_command import main as ssh_session  # sshd runs it once per session

        return ssh_session(arguments[1:])
    if arguments[:1] == ["proxy"]:
        from lockd.proxy.proxy_command import main as proxy  # the proxy needs none of the daemon

        return proxy(arguments[1:])
    from lockd.daemon import main as daemon

    return daemon(arguments)

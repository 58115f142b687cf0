"""`python -m lockd.bench.launch MODULE [ARGS...]`: run MODULE as `python -m` would,
but first ask the kernel to kill this process when the coordinator dies.

The benchmark starts the auth server as `python -m lockd.bench.launch lockd auth
--config FILE`: the daemon's own code, unchanged, in a process that cannot outlive
`lockd bench`.
"""

from __future__ import annotations

import runpy
import sys

from lockd.bench.procs import die_with_parent


def main() -> None:
    die_with_parent()
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m lockd.bench.launch MODULE [ARGS...]")
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

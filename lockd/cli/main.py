"""The `lockctl` console script.

lockctl reports connection failures itself (`ERROR: cannot reach ...: TLS handshake
failed ...`); gRPC's core would also log them on stderr, in its own format. Its log level
is read once, when gRPC is first imported, so `main` imports the CLI (and with it gRPC)
with gRPC's logging off, then restores the environment for whatever lockctl starts.
`GRPC_VERBOSITY` set by the user (e.g. debug) still wins.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    if "GRPC_VERBOSITY" not in os.environ and "grpc" not in sys.modules:
        os.environ["GRPC_VERBOSITY"] = "NONE"
        try:
            import lockd.client.calls  # noqa: F401  (imports gRPC, which reads its log level then)
        finally:
            del os.environ["GRPC_VERBOSITY"]
    from lockd.cli.app import main as run_command

    return run_command(argv)


if __name__ == "__main__":
    sys.exit(main())

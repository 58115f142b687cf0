"""lockctl: the admin CLI of lockd, modelled on Teleport's `tctl`.

`lockd.cli.main:main` is the entry point. The package never touches gRPC: it talks to
the auth server through `lockd.client.AuthClient`, parses and validates every argument
locally first (bad input exits 2 before any request is sent), and prints a command's
result on stdout and progress, notes and errors on stderr.
"""

import os
import sys

# lockctl reports connection failures itself (`ERROR: cannot reach ...: TLS handshake
# failed ...`); gRPC's core would also log them on stderr, in its own format. Its log
# level is read once, when gRPC is first imported: load it here with logging off, then
# restore the environment. GRPC_VERBOSITY set by the user (e.g. debug) still wins.
if "GRPC_VERBOSITY" not in os.environ and "grpc" not in sys.modules:
    os.environ["GRPC_VERBOSITY"] = "NONE"
    try:
        import lockd.client  # noqa: F401
    finally:
        del os.environ["GRPC_VERBOSITY"]

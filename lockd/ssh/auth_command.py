"""`lockd ssh-session auth-principals|auth-keys [--socket S] LOGIN TYPE KEY`: sshd's
AuthorizedPrincipalsCommand / AuthorizedKeysCommand under the guard.

sshd runs it (as AuthorizedPrincipalsCommandUser / AuthorizedKeysCommandUser, root) with
`%u %t %k` for every key a client offers. It asks `lockd ssh-session guard` and prints
the guard's answer: the lines sshd reads as the authorized principals or keys. Nothing
printed, or exit 1 (the guard is not running, a timeout), lets the key in nowhere: the
check fails closed. Only the standard library is imported, so that it starts fast.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence

DEFAULT_SOCKET = "/run/lockd/ssh-guard.sock"
TIMEOUT = 15.0  # the guard waits up to the agent client's connect timeout (5 s)
KINDS = {"auth-principals": "principals", "auth-keys": "keys"}


def main(command: str, argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=f"lockd ssh-session {command}",
        description="sshd's Authorized{Principals,Keys}Command under lockd ssh-session guard "
        "(docs/ssh.md); prints the lines the guard allows",
    )
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help=f"(default {DEFAULT_SOCKET})")
    parser.add_argument("login", help="%%u")
    parser.add_argument("key_type", help="%%t")
    parser.add_argument("key", help="%%k")
    args = parser.parse_args(argv)
    request = {"kind": KINDS[command], "login": args.login, "key_type": args.key_type}
    request["key"] = args.key
    try:
        with socket.socket(socket.AF_UNIX) as guard:
            guard.settimeout(TIMEOUT)
            guard.connect(args.socket)
            guard.sendall(json.dumps(request).encode() + b"\n")
            answer = json.loads(guard.makefile("rb").readline())
    except (OSError, ValueError) as error:
        print(f"lockd ssh-session {command}: the guard at {args.socket}: {error}", file=sys.stderr)
        return 1
    if answer.get("error"):
        print(f"lockd ssh-session {command}: {answer['error']}", file=sys.stderr)
    for line in answer.get("lines", []):
        print(line)
    return 0

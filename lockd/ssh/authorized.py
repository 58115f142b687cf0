"""What the guard's auth commands print for sshd, for an allowed or a refused connection.

sshd asks `AuthorizedPrincipalsCommand` (certificates) or `AuthorizedKeysCommand` (plain
keys) whether the offered credential may log in as the login. The guard answers:

- a certificate: the login as the one authorized principal (what sshd checks without a
  principals command: the certificate must name the login);
- a plain key: the lines of the login's authorized_keys files that carry that key, as
  they are (their options kept). With the command in use, sshd reads no
  `AuthorizedKeysFile` itself (`AuthorizedKeysFile none`), so the guard reads them.

A **refused** connection (a lock, strict mode, an identity lockd cannot tell) is still
let in, with the `restrict` option (no port, agent or X11 forwarding, no PTY, no
~/.ssh/rc): a refusal at authentication would show the user only "Permission denied",
never the lock's message. The guard then writes the message into the connection's first
session and ends the connection, or ends it at once if it opens none
(`lockd.ssh.guard`). `restrict` goes *after* a line's own options, so that a
`port-forwarding` there cannot turn forwarding back on.
"""

from __future__ import annotations

import pwd
from pathlib import Path

RESTRICT = "restrict"


def principal_lines(login: str) -> list[str]:
    return [login]


def key_lines(text: str, key_type: str, key: str) -> list[str]:
    """The lines of an authorized_keys file that carry `key_type key`."""
    found = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _key_at(stripped, key_type, key) >= 0:
            found.append(stripped)
    return found


def restricted(lines: list[str], key_type: str = "", key: str = "") -> list[str]:
    """The same lines with `restrict` as their last option."""
    out = []
    for text in lines:
        at = _key_at(text, key_type, key) if key else 0
        options = text[:at].strip()
        rest = text[at:]
        out.append(f"{options},{RESTRICT} {rest}" if options else f"{RESTRICT} {rest}")
    return out


def _key_at(line: str, key_type: str, key: str) -> int:
    """Where `key_type key` starts in `line` (at its start or after whitespace), or -1."""
    wanted = f"{key_type} {key}"
    start = 0
    while (at := line.find(wanted, start)) >= 0:
        end = at + len(wanted)
        if (at == 0 or line[at - 1] in " \t") and (end == len(line) or line[end] in " \t"):
            return at
        start = at + 1
    return -1


def authorized_keys_files(patterns: tuple[str, ...], login: str) -> list[Path]:
    """sshd's AuthorizedKeysFile tokens: %h the login's home, %u the login, %% a %;
    a relative path is under the home, as sshd has it."""
    try:
        home = pwd.getpwnam(login).pw_dir
    except KeyError:
        return []
    files = []
    for pattern in patterns:
        expanded = (
            pattern.replace("%%", "\0").replace("%h", home).replace("%u", login).replace("\0", "%")
        )
        path = Path(expanded)
        files.append(path if path.is_absolute() else Path(home) / path)
    return files


def authorized_key_lines(
    patterns: tuple[str, ...], login: str, key_type: str, key: str
) -> list[str]:
    """Every line of the login's authorized_keys files that carries the key."""
    lines = []
    for path in authorized_keys_files(patterns, login):
        try:
            lines.extend(key_lines(path.read_text(encoding="utf-8"), key_type, key))
        except (OSError, UnicodeDecodeError):
            continue  # a login without the file (or with garbage in it) has no keys there
    return lines

"""What the user asked sshd for, run the way sshd itself would run it.

sshd runs a ForceCommand with the login's shell (`shell -c "lockd ssh-session"`) and
keeps what the client asked for in `SSH_ORIGINAL_COMMAND`: a command (`ssh host ls`,
scp and rsync run one), the subsystem's configured command (`Subsystem sftp
/usr/lib/openssh/sftp-server`: `internal-sftp` cannot be used, it exists only inside
sshd), or nothing for a login shell. The hook runs the same with the login's shell:
`shell -c COMMAND`, or the shell as a login shell (`-bash`) in the PTY sshd allocated.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class UserProgram:
    executable: str
    argv: tuple[str, ...]

    @property
    def description(self) -> str:
        return " ".join(self.argv[2:]) if len(self.argv) > 2 else "login shell"


def login_entry() -> pwd.struct_passwd:
    return pwd.getpwuid(os.getuid())


def requested_program(entry: pwd.struct_passwd, original_command: str | None) -> UserProgram:
    shell = entry.pw_shell or "/bin/sh"
    if original_command:
        return UserProgram(shell, (shell, "-c", original_command))
    return UserProgram(shell, ("-" + Path(shell).name,))


def start(program: UserProgram) -> subprocess.Popen[bytes]:
    """Start the program on the hook's stdin, stdout and stderr (sshd's channel or PTY).

    It stays in the hook's session and process group, as under plain sshd: an
    interactive shell takes the terminal for its jobs itself, and terminal signals (^C)
    reach the program while the hook ignores them.
    """
    return subprocess.Popen(list(program.argv), executable=program.executable)

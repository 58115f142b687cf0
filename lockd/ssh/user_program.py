"""What the user asked sshd for, run the way sshd itself would run it.

sshd runs a ForceCommand with the login's shell (`shell -c "lockd ssh-session"`) and
keeps what the client asked for in `SSH_ORIGINAL_COMMAND`: a command (`ssh host ls`,
scp and rsync run one), the subsystem's configured command (`Subsystem sftp
/usr/lib/openssh/sftp-server`: `internal-sftp` cannot be used, it exists only inside
sshd), or nothing for a login shell. The hook runs the same with the login's shell:
`shell -c COMMAND`, or the shell as a login shell (`-bash`) in the PTY sshd allocated.

`run_in_tree` is the whole hook under `lockd ssh-session guard` (`--guarded`): the guard
checked the connection and ends it; the hook only keeps the session's processes in its
tree (a child subreaper), so that the guard finds and kills them all.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lockd.ssh import processes

FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGTERM)
# Terminal signals are the program's business (it shares the hook's process group).
IGNORED_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP)


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


def run_in_tree(program: UserProgram) -> int:
    """Run the program as a child of this subreaper; its exit status (128 + N for a
    signal, as shells say)."""
    processes.become_subreaper()
    child = start(program)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            return  # it exited meanwhile

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    for signum in IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    code = child.wait()
    processes.reap_orphans()
    return exit_status(code)


def exit_status(code: int) -> int:
    return 128 - code if code < 0 else code

"""Enforcement on stock OpenSSH (docs/ssh.md).

`guard` (`lockd ssh-session guard`, root) checks every connection when it authenticates,
asked by sshd's auth commands (`auth_command`, answers from `authorized`), and ends it
on a lock (`connection_processes`: the connection's processes; `notice`: the message); the
ForceCommand hook runs the session (`user_program`) in one process tree (`processes`).
Without the guard, `hook` checks, supervises and ends each session itself.
`session_identity` says who a connection is; `ssh_command` is the `lockd ssh-session`
command line.
"""

"""Enforcement on stock OpenSSH: `lockd ssh-session`, run by sshd as its ForceCommand.

`hook` checks and registers each SSH session with the node agent and ends the whole
connection when a lock hits it; `session_identity` says who the session is;
`user_program` runs what the user asked for; `processes` keeps the session's processes
in one tree and finds the connection's sshd process. See docs/ssh.md.
"""

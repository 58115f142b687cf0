"""lockctl: the admin CLI of lockd, modelled on Teleport's `tctl`.

`lockd.cli.main:main` is the entry point; `lockd.cli.app` parses and runs a command. The
package never touches gRPC: it talks to the auth server through `lockd.client.AuthClient`,
parses and validates every argument locally first (bad input exits 2 before any request
is sent), and prints a command's result on stdout and progress, notes and errors on
stderr.
"""

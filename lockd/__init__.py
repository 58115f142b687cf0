"""lockd: session and identity locking.

An auth server stores locks and streams every change to node agents, which enforce them
on the live sessions that sidecars register. See README.md and docs/.
"""

__version__ = "0.1.0"

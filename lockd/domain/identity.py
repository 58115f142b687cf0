"""Who takes part in an interaction, and the query targets a lock is matched against.

SPEC §2 and §9: one single-field query target per non-empty attribute, one per role and
per access request, plus the `server_id` of the agent that serves the interaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from lockd.domain.lock import TargetPair


@dataclass(frozen=True, slots=True)
class Identity:
    """The identity of a session or request, as a sidecar reports it to its agent."""

    user: str = ""
    roles: tuple[str, ...] = ()
    login: str = ""
    mfa_device: str = ""
    device: str = ""
    access_requests: tuple[str, ...] = ()
    windows_desktop: str = ""
    bot_instance_id: str = ""
    join_token: str = ""
    server_id: str = ""

    def on_server(self, server_id: str) -> Identity:
        """The same identity as served by the agent `server_id`."""
        return replace(self, server_id=server_id)

    def query_targets(self) -> tuple[TargetPair, ...]:
        """Single-field query targets, each only when non-empty, duplicates removed."""
        candidates: Iterable[TargetPair] = (
            ("user", self.user),
            *(("role", role) for role in self.roles),
            ("login", self.login),
            ("mfa_device", self.mfa_device),
            ("device", self.device),
            *(("access_request", request) for request in self.access_requests),
            ("server_id", self.server_id),
            ("windows_desktop", self.windows_desktop),
            ("bot_instance_id", self.bot_instance_id),
            ("join_token", self.join_token),
        )
        return tuple(dict.fromkeys(pair for pair in candidates if pair[1]))

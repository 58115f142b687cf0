"""Who takes part in an interaction, and the query targets a lock is matched against.

SPEC §2 and §9: one single-field query target per non-empty attribute, one per role and
per access request, plus the `server_id` of the agent that serves the interaction.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        """The same identity as served by the agent `server_id`.

        Built positionally, not with dataclasses.replace: it runs for every registration.
        """
        return Identity(
            self.user,
            self.roles,
            self.login,
            self.mfa_device,
            self.device,
            self.access_requests,
            self.windows_desktop,
            self.bot_instance_id,
            self.join_token,
            server_id,
        )

    def query_targets(self) -> tuple[TargetPair, ...]:
        """Single-field query targets, each only when non-empty, duplicates removed."""
        return self.query_targets_on(self.server_id)

    def query_targets_on(self, server_id: str) -> tuple[TargetPair, ...]:
        """`on_server(server_id).query_targets()`, without building that identity.

        Written out field by field: it runs for every access check.
        """
        pairs: list[TargetPair] = []
        if self.user:
            pairs.append(("user", self.user))
        pairs.extend(("role", role) for role in self.roles if role)
        if self.login:
            pairs.append(("login", self.login))
        if self.mfa_device:
            pairs.append(("mfa_device", self.mfa_device))
        if self.device:
            pairs.append(("device", self.device))
        pairs.extend(("access_request", request) for request in self.access_requests if request)
        if server_id:
            pairs.append(("server_id", server_id))
        if self.windows_desktop:
            pairs.append(("windows_desktop", self.windows_desktop))
        if self.bot_instance_id:
            pairs.append(("bot_instance_id", self.bot_instance_id))
        if self.join_token:
            pairs.append(("join_token", self.join_token))
        # Only repeated roles or access requests can repeat a pair.
        if len(self.roles) > 1 or len(self.access_requests) > 1:
            return tuple(dict.fromkeys(pairs))
        return tuple(pairs)

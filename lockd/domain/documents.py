"""Resource documents as plain mappings: the shape `lockctl get` prints and `create -f` reads.

This module works on already-parsed data (dicts, lists, scalars), so it stays pure; the
YAML/JSON text codec lives in `lockd.document_text`. It is strict on purpose:

* unknown keys, a wrong `kind` or `version`, and non-string values where strings belong
  are refused with the document path in the message;
* YAML 1.1 hands us surprises (`no` → False, `1:30` → 90, unquoted timestamps →
  datetimes): booleans and numbers are never taken for strings, and a parsed datetime is
  accepted for a timestamp only when it carries a zone.

`encode_resource` and `decode_resource` are inverses: what `get` prints reads back
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from lockd.domain.errors import ValidationError
from lockd.domain.lock import TARGET_FIELDS, Lock, LockTarget
from lockd.domain.modes import parse_locking_mode
from lockd.domain.resources import (
    CLUSTER_AUTH_PREFERENCE_NAME,
    ClusterAuthPreference,
    Kind,
    Resource,
    Role,
    Rule,
    User,
)
from lockd.domain.timeparse import format_rfc3339, parse_rfc3339, require_aware

LOCK_VERSION = "v2"
ROLE_VERSIONS = ("v5", "v6", "v7")
USER_VERSION = "v2"
CAP_VERSION = "v2"
DOCUMENT_KINDS = (Kind.LOCK, Kind.ROLE, Kind.USER, Kind.CLUSTER_AUTH_PREFERENCE)


class _Node:
    """A mapping being read, with its path for error messages and unknown-key checks."""

    def __init__(self, value: object, path: str) -> None:
        where = path or "the document"  # the root has an empty path
        if not isinstance(value, Mapping):
            raise ValidationError(f"{where} must be a mapping, got {_describe(value)}")
        for key in value:
            if not isinstance(key, str):
                raise ValidationError(f"{where} has a non-string key {_describe(key)}")
        self.data: Mapping[str, object] = value
        self.path = path

    def only(self, *allowed: str) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise ValidationError(f"unknown key {self._at(unknown[0])}")

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def child(self, key: str, *, required: bool = False) -> _Node:
        value = self.data.get(key)
        if value is None:
            if required:
                raise ValidationError(f"missing {self._at(key)}")
            value = {}
        return _Node(value, self._at(key))

    def string(self, key: str, *, required: bool = False) -> str:
        value = self.data.get(key)
        if value is None:
            if required:
                raise ValidationError(f"missing {self._at(key)}")
            return ""
        if not isinstance(value, str):
            raise ValidationError(
                f"{self._at(key)} must be a string, got {_describe(value)} (quote it)"
            )
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise ValidationError(f"{self._at(key)} must be a list, got {_describe(value)}")
        for position, item in enumerate(value):
            if not isinstance(item, str):
                raise ValidationError(
                    f"{self._at(key)}[{position}] must be a string, got {_describe(item)}"
                )
        return tuple(value)

    def list_of_nodes(self, key: str) -> list[_Node]:
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValidationError(f"{self._at(key)} must be a list, got {_describe(value)}")
        return [_Node(item, f"{self._at(key)}[{i}]") for i, item in enumerate(value)]

    def timestamp(self, key: str) -> datetime | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, datetime):
            return require_aware(value, self._at(key))
        if isinstance(value, date) or not isinstance(value, str):
            raise ValidationError(
                f"{self._at(key)} must be an RFC3339 timestamp string, got {_describe(value)}"
            )
        try:
            return parse_rfc3339(value)
        except ValidationError as error:
            raise ValidationError(f"{self._at(key)}: {error}") from None


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, datetime | date):
        return f"timestamp {value.isoformat()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def decode_resource(document: object) -> Resource:
    """Turn one parsed document into a validated resource, or raise ValidationError."""
    root = _Node(document, "")
    kind = root.string("kind", required=True)
    version = root.string("version")
    decoders: dict[str, Callable[[_Node, str], Resource]] = {
        Kind.LOCK.value: _decode_lock,
        Kind.ROLE.value: _decode_role,
        Kind.USER.value: _decode_user,
        Kind.CLUSTER_AUTH_PREFERENCE.value: _decode_cap,
    }
    if kind not in decoders:
        known = ", ".join(kind.value for kind in DOCUMENT_KINDS)
        raise ValidationError(f'unsupported kind "{kind}" (supported: {known})')
    root.only("kind", "version", "metadata", "spec")
    resource = decoders[kind](root, version)
    resource.validate()
    return resource


def _check_version(kind: str, version: str, accepted: tuple[str, ...]) -> None:
    if version not in accepted:
        raise ValidationError(
            f'unsupported {kind} version "{version}" (supported: {", ".join(accepted)})'
        )


def _name(root: _Node) -> str:
    metadata = root.child("metadata", required=True)
    metadata.only("name")
    return metadata.string("name", required=True)


def _decode_lock(root: _Node, version: str) -> Lock:
    _check_version("lock", version, (LOCK_VERSION,))
    name = _name(root)
    spec = root.child("spec", required=True)
    spec.only("target", "message", "expires", "created_at", "created_by")
    target_node = spec.child("target", required=True)
    target_node.only(*TARGET_FIELDS)
    target = LockTarget(**{field: target_node.string(field) for field in TARGET_FIELDS})
    return Lock(
        name=name,
        target=target,
        message=spec.string("message"),
        expires=spec.timestamp("expires"),
        created_at=spec.timestamp("created_at"),
        created_by=spec.string("created_by"),
    )


def _rules(conditions: _Node) -> tuple[Rule, ...]:
    conditions.only("rules")
    rules = []
    for node in conditions.list_of_nodes("rules"):
        node.only("resources", "verbs")
        rules.append(Rule(resources=node.strings("resources"), verbs=node.strings("verbs")))
    return tuple(rules)


def _decode_role(root: _Node, version: str) -> Role:
    _check_version("role", version, ROLE_VERSIONS)
    name = _name(root)
    spec = root.child("spec")
    spec.only("allow", "deny", "options")
    options = spec.child("options")
    options.only("lock")
    mode_text = options.data.get("lock")
    return Role(
        name=name,
        allow=_rules(spec.child("allow")),
        deny=_rules(spec.child("deny")),
        lock_mode=None if mode_text is None else parse_locking_mode(mode_text),
    )


def _decode_user(root: _Node, version: str) -> User:
    _check_version("user", version, (USER_VERSION,))
    name = _name(root)
    spec = root.child("spec")
    spec.only("roles")
    return User(name=name, roles=spec.strings("roles"))


def _decode_cap(root: _Node, version: str) -> ClusterAuthPreference:
    _check_version("cluster_auth_preference", version, (CAP_VERSION,))
    metadata = root.child("metadata")
    metadata.only("name")
    name = metadata.string("name")
    if name and name != CLUSTER_AUTH_PREFERENCE_NAME:
        raise ValidationError(
            f'cluster_auth_preference must be named "{CLUSTER_AUTH_PREFERENCE_NAME}", got "{name}"'
        )
    spec = root.child("spec")
    spec.only("locking_mode")
    mode = spec.data.get("locking_mode")
    return (
        ClusterAuthPreference()
        if mode is None
        else ClusterAuthPreference(locking_mode=parse_locking_mode(mode))
    )


def encode_resource(resource: Resource) -> dict[str, Any]:
    """The document `get` prints for a resource (keys in Teleport's order)."""
    match resource:
        case Lock():
            return _document(Kind.LOCK, LOCK_VERSION, resource.name, _lock_spec(resource))
        case Role():
            return _document(Kind.ROLE, ROLE_VERSIONS[0], resource.name, _role_spec(resource))
        case User():
            return _document(Kind.USER, USER_VERSION, resource.name, {"roles": [*resource.roles]})
        case ClusterAuthPreference():
            spec = {"locking_mode": resource.locking_mode.value}
            return _document(Kind.CLUSTER_AUTH_PREFERENCE, CAP_VERSION, resource.name, spec)


def _document(kind: Kind, version: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind.value, "version": version, "metadata": {"name": name}, "spec": spec}


def _lock_spec(lock: Lock) -> dict[str, Any]:
    spec: dict[str, Any] = {"target": lock.target.as_dict()}
    if lock.message:
        spec["message"] = lock.message
    if lock.expires is not None:
        spec["expires"] = format_rfc3339(lock.expires)
    if lock.created_at is not None:
        spec["created_at"] = format_rfc3339(lock.created_at)
    if lock.created_by:
        spec["created_by"] = lock.created_by
    return spec


def _role_spec(role: Role) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for label, rules in (("allow", role.allow), ("deny", role.deny)):
        if rules:
            spec[label] = {
                "rules": [{"resources": [*r.resources], "verbs": [*r.verbs]} for r in rules]
            }
    if role.lock_mode is not None:
        spec["options"] = {"lock": role.lock_mode.value}
    return spec

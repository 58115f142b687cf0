"""YAML and JSON text ⇄ resources: the codec behind `lockctl get` and `lockctl create -f`.

Parsing and printing text is IO-adjacent and needs PyYAML, so it lives outside the pure
domain; every rule about what a document may contain is in `lockd.domain.documents`.
A stream holds one or more documents: YAML separated by `---`, or JSON as one object or
an array of objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import yaml

from lockd.domain.documents import decode_resource, encode_resource
from lockd.domain.errors import ValidationError
from lockd.domain.resources import Resource


class Format(StrEnum):
    YAML = "yaml"
    JSON = "json"


def parse_documents(text: str, source: str = "<stdin>") -> list[Resource]:
    """Every document in `text`, validated; the first bad one raises ValidationError."""
    raw = _load_raw(text, source)
    if not raw:
        raise ValidationError(f"{source}: no documents found")
    resources = []
    for position, document in enumerate(raw, start=1):
        try:
            resources.append(decode_resource(document))
        except ValidationError as error:
            raise ValidationError(f"{source}: document {position}: {error}") from None
    return resources


def _load_raw(text: str, source: str) -> list[object]:
    if text.lstrip().startswith(("{", "[")):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValidationError(f"{source}: invalid JSON: {error}") from None
        return loaded if isinstance(loaded, list) else [loaded]
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise ValidationError(f"{source}: invalid YAML: {error}") from None


def render_documents(resources: Sequence[Resource], fmt: Format) -> str:
    """YAML documents separated by `---`, or JSON (an array, as `tctl get` prints)."""
    documents = [encode_resource(resource) for resource in resources]
    if fmt is Format.JSON:
        return json.dumps(documents, indent=2, ensure_ascii=False) + "\n"
    return "---\n".join(_yaml(document) for document in documents)


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def render_one(resource: Resource, fmt: Format) -> str:
    """A single resource (`get lock/<name>`): a bare object in JSON, one YAML document."""
    if fmt is Format.JSON:
        return json.dumps(encode_resource(resource), indent=2, ensure_ascii=False) + "\n"
    return _yaml(encode_resource(resource))

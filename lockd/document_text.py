"""YAML and JSON text ⇄ resources: the codec behind `lockctl get` and `lockctl create -f`.

Parsing and printing text is IO-adjacent and needs PyYAML, so it lives outside the pure
domain; every rule about what a document may contain is in `lockd.domain.documents`.
A stream holds one or more documents: YAML separated by `---`, or JSON as one object or
an array of objects.

One strict YAML loader serves documents and config files alike (`lockd.config` reads its
files with it): a duplicate key is an error, never a silent "last one wins"; JSON
documents refuse duplicate keys the same way.
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


class YamlInt(int):
    """An int that remembers how YAML spelled it (`0660`, `660`, `1:30`)."""

    text: str


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keeps the spelling of integers."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlInt:
    value = YamlInt(loader.construct_yaml_int(node))
    value.text = str(node.value)
    return value


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
    return result


StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


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


# Besides their own error classes, the parsers raise plain Python errors on some input:
# json and PyYAML a ValueError for integers past sys.get_int_max_str_digits(); PyYAML's
# constructors ValueError, LookupError or AttributeError for malformed tagged or implicit
# scalars (`!!bool foo`, `!!timestamp foo`, `2021-02-30T00:00:00Z`); both a RecursionError
# for deeply nested collections.
_JSON_ERRORS = (ValueError, RecursionError)
_YAML_ERRORS = (yaml.YAMLError, ValueError, LookupError, AttributeError, RecursionError)


def _load_raw(text: str, source: str) -> list[object]:
    if text.lstrip().startswith(("{", "[")):
        try:
            loaded = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
        except _JSON_ERRORS as error:
            raise ValidationError(f"{source}: invalid JSON: {error}") from None
        return loaded if isinstance(loaded, list) else [loaded]
    try:
        return [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc is not None]
    except _YAML_ERRORS as error:
        raise ValidationError(f"{source}: invalid YAML: {error}") from None


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def render_documents(resources: Sequence[Resource], fmt: Format) -> str:
    """YAML documents separated by `---`, or JSON (an array, as `tctl get` prints)."""
    documents = [encode_resource(resource) for resource in resources]
    if fmt is Format.JSON:
        return json.dumps(documents, indent=2, ensure_ascii=False) + "\n"
    return "---\n".join(_yaml(document) for document in documents)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that keeps strings with U+0085 (NEL) intact.

    PyYAML writes NEL raw inside a single-quoted scalar, where a reader folds it (a YAML
    1.1 line break) into a space: `get` output would not read back unchanged. Double
    quotes escape it as `\\N`.
    """


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if "\x85" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _yaml(document: dict[str, Any]) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def render_one(resource: Resource, fmt: Format) -> str:
    """A single resource (`get lock/<name>`): a bare object in JSON, one YAML document."""
    if fmt is Format.JSON:
        return json.dumps(encode_resource(resource), indent=2, ensure_ascii=False) + "\n"
    return _yaml(encode_resource(resource))

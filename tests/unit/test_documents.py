"""Resource documents: the domain decoder/encoder and the YAML/JSON text codec."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from lockd.document_text import Format, parse_documents, render_documents, render_one
from lockd.domain.documents import decode_resource, encode_resource
from lockd.domain.errors import ValidationError
from lockd.domain.lock import (
    TARGET_FIELDS,
    Lock,
    LockTarget,
    forbidden_in_message,
    is_plain_text,
)
from lockd.domain.modes import LockingMode
from lockd.domain.resources import ClusterAuthPreference, Resource, Role, Rule, User
from tests.unit.strategies import T0, TRICKY_STRINGS, locks, resources

SPEC_LOCK_YAML = """\
kind: lock
version: v2
metadata:
  name: dc7cee9d-fe5e-4534-a90d-db770f0234a1
spec:
  target:
    user: foo@example.com
  message: "Suspicious activity."
  expires: "2021-08-14T22:27:00Z"
  created_at: "2021-08-14T12:27:00Z"
  created_by: alice
"""

SPEC_LOCK = Lock(
    name="dc7cee9d-fe5e-4534-a90d-db770f0234a1",
    target=LockTarget(user="foo@example.com"),
    message="Suspicious activity.",
    expires=T0,
    created_at=datetime(2021, 8, 14, 12, 27, tzinfo=UTC),
    created_by="alice",
)

# The Teleport documents of the reference page, verbatim.
LOCKSMITH_ROLE_YAML = """\
kind: role
version: v5
metadata:
  name: locksmith
spec:
  allow:
    rules:
    - resources: [lock]
      verbs: [list, create, read, update, delete]
"""

STRICT_ROLE_YAML = """\
kind: role
version: v5
metadata:
  name: example-role-with-strict-locking
spec:
  options:
    lock: strict
"""

CAP_YAML = """\
kind: cluster_auth_preference
metadata:
  name: cluster-auth-preference
spec:
  locking_mode: best_effort
version: v2
"""


def lock_document(**spec: Any) -> dict[str, Any]:
    """A valid lock document whose spec is updated with `spec`."""
    body: dict[str, Any] = {"target": {"user": "foo@example.com"}}
    body.update(spec)
    return {"kind": "lock", "version": "v2", "metadata": {"name": "l1"}, "spec": body}


def lock_yaml(spec_lines: str) -> str:
    """A lock YAML document with extra lines (indented by two) under `spec:`."""
    return (
        "kind: lock\nversion: v2\nmetadata:\n  name: l1\nspec:\n"
        "  target:\n    user: foo@example.com\n" + spec_lines
    )


def refused(text: str) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    return str(caught.value)


# --- the SPEC and Teleport documents ---------------------------------------------------


def test_spec_lock_document_parses_to_the_lock() -> None:
    """SPEC §1's example lock reads to the expected Lock, times in UTC."""
    assert parse_documents(SPEC_LOCK_YAML) == [SPEC_LOCK]


def test_locksmith_role_parses_verbatim() -> None:
    """Teleport's locksmith role (v5, lock rules) reads as written."""
    assert parse_documents(LOCKSMITH_ROLE_YAML) == [
        Role(
            name="locksmith",
            allow=(
                Rule(resources=("lock",), verbs=("list", "create", "read", "update", "delete")),
            ),
        )
    ]


def test_role_with_strict_lock_option_parses_verbatim() -> None:
    """`spec.options.lock: strict` gives the role the strict mode."""
    assert parse_documents(STRICT_ROLE_YAML) == [
        Role(name="example-role-with-strict-locking", lock_mode=LockingMode.STRICT)
    ]


def test_cap_document_with_version_after_spec_parses_verbatim() -> None:
    """Key order does not matter: `version: v2` after spec is fine."""
    assert parse_documents(CAP_YAML) == [
        ClusterAuthPreference(locking_mode=LockingMode.BEST_EFFORT)
    ]


def test_several_documents_per_yaml_stream() -> None:
    """Documents separated by `---` are all read, in order; empty ones are skipped."""
    text = "---\n" + SPEC_LOCK_YAML + "---\n" + LOCKSMITH_ROLE_YAML + "---\n---\n" + CAP_YAML
    parsed = parse_documents(text)
    assert [type(r) for r in parsed] == [Lock, Role, ClusterAuthPreference]
    assert parsed[0] == SPEC_LOCK


def test_json_array_and_single_object_are_both_read() -> None:
    """JSON input is one object or an array of objects."""
    document = encode_resource(SPEC_LOCK)
    assert parse_documents(json.dumps(document)) == [SPEC_LOCK]
    assert parse_documents(json.dumps([document, document])) == [SPEC_LOCK, SPEC_LOCK]


def test_user_document_parses() -> None:
    """A user document lists role names."""
    text = "kind: user\nversion: v2\nmetadata:\n  name: alice\nspec:\n  roles: [dev, locksmith]\n"
    assert parse_documents(text) == [User(name="alice", roles=("dev", "locksmith"))]


def test_cap_document_without_metadata_defaults_the_name() -> None:
    """The singleton preference may omit metadata."""
    text = "kind: cluster_auth_preference\nversion: v2\nspec:\n  locking_mode: strict\n"
    assert parse_documents(text) == [ClusterAuthPreference(locking_mode=LockingMode.STRICT)]


# --- YAML 1.1 traps ------------------------------------------------------------------


def test_unquoted_no_as_message_is_refused_as_non_string() -> None:
    """`message: no` is a YAML boolean: refused, with a hint to quote it."""
    message = refused(lock_yaml("  message: no\n"))
    assert "spec.message must be a string, got boolean false (quote it)" in message


def test_quoted_no_as_message_is_accepted() -> None:
    """`message: "no"` is the string no."""
    assert parse_documents(lock_yaml('  message: "no"\n'))[0].message == "no"  # type: ignore[union-attr]


def test_unquoted_aware_expires_is_accepted() -> None:
    """`expires: 2021-08-14T22:27:00Z` unquoted (a YAML timestamp) is read as that instant."""
    lock = parse_documents(lock_yaml("  expires: 2021-08-14T22:27:00Z\n"))[0]
    assert isinstance(lock, Lock)
    assert lock.expires == T0
    assert lock.expires.tzinfo is UTC


def test_unquoted_expires_with_offset_is_normalised_to_utc() -> None:
    """An unquoted timestamp with +02:00 is converted to UTC."""
    lock = parse_documents(lock_yaml("  expires: 2021-08-15T00:27:00+02:00\n"))[0]
    assert isinstance(lock, Lock)
    assert lock.expires == T0
    assert lock.expires.tzinfo is UTC


def test_unquoted_naive_expires_is_refused() -> None:
    """An unquoted timestamp without a zone is refused."""
    message = refused(lock_yaml("  expires: 2021-08-14 22:27:00\n"))
    assert "spec.expires has no time zone" in message


def test_quoted_naive_expires_is_refused() -> None:
    """A quoted timestamp without a zone is refused too."""
    message = refused(lock_yaml('  expires: "2021-08-14T22:27:00"\n'))
    assert "spec.expires: invalid timestamp" in message


def test_unquoted_date_as_expires_is_refused() -> None:
    """`expires: 2021-08-14` is a YAML date, not an instant."""
    message = refused(lock_yaml("  expires: 2021-08-14\n"))
    assert "spec.expires must be an RFC3339 timestamp string, got timestamp 2021-08-14" in message


def test_unquoted_impossible_date_is_refused_not_crashed_on() -> None:
    """`expires: 2021-02-30T00:00:00Z` makes PyYAML raise ValueError: reported as invalid YAML."""
    assert "invalid YAML" in refused(lock_yaml("  expires: 2021-02-30T00:00:00Z\n"))


def test_unquoted_sexagesimal_login_is_refused() -> None:
    """`login: 1:30` is the YAML 1.1 number 90: refused."""
    message = refused(
        "kind: lock\nversion: v2\nmetadata:\n  name: l1\nspec:\n  target:\n    login: 1:30\n"
    )
    assert "spec.target.login must be a string, got number 90" in message


@pytest.mark.parametrize("value", ["yes", "on", "123", "1.5", "0x10", "[a]", "{a: b}"])
def test_non_string_target_values_are_refused(value: str) -> None:
    """Booleans, numbers, lists and mappings are never taken for target strings."""
    text = f"kind: lock\nversion: v2\nmetadata:\n  name: l1\nspec:\n  target:\n    user: {value}\n"
    assert "spec.target.user must be a string" in refused(text)


def test_null_target_field_counts_as_unset() -> None:
    """`user: ~` is no value: with no other field the target is empty."""
    text = "kind: lock\nversion: v2\nmetadata:\n  name: l1\nspec:\n  target:\n    user: ~\n"
    assert refused(text).endswith("at least one target field must be set")


def test_empty_target_is_refused_with_the_spec_message() -> None:
    """`target: {}` fails with SPEC §1's text."""
    assert refused(
        "kind: lock\nversion: v2\nmetadata:\n  name: l1\nspec:\n  target: {}\n"
    ).endswith("at least one target field must be set")


def test_non_string_name_is_refused() -> None:
    """`name: 123` is refused: names are strings."""
    text = "kind: lock\nversion: v2\nmetadata:\n  name: 123\nspec:\n  target:\n    user: a\n"
    assert "metadata.name must be a string, got number 123" in refused(text)


def test_empty_name_is_refused() -> None:
    """`name: ""` is refused."""
    text = 'kind: lock\nversion: v2\nmetadata:\n  name: ""\nspec:\n  target:\n    user: a\n'
    assert refused(text).endswith("lock name must not be empty")


def test_missing_name_is_refused() -> None:
    """A lock without metadata.name is refused."""
    text = "kind: lock\nversion: v2\nmetadata: {}\nspec:\n  target:\n    user: a\n"
    assert refused(text).endswith("missing metadata.name")


# --- unknown keys, kinds, versions -----------------------------------------------------


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({**lock_document(), "extra": 1}, "extra"),
        ({**lock_document(), "metadata": {"name": "l1", "labels": {}}}, "metadata.labels"),
        (lock_document(ttl="10h"), "spec.ttl"),
        (lock_document(target={"user": "u", "node": "n"}), "spec.target.node"),
    ],
)
def test_unknown_keys_are_refused_with_their_path(document: dict[str, Any], path: str) -> None:
    """Every unknown key is reported with its dotted path."""
    with pytest.raises(ValidationError, match=rf"^unknown key {path}$"):
        decode_resource(document)


def test_unknown_key_in_a_role_rule_is_refused_with_its_path() -> None:
    """Paths include list positions: spec.allow.rules[0].where."""
    document = {
        "kind": "role",
        "version": "v5",
        "metadata": {"name": "r"},
        "spec": {"allow": {"rules": [{"resources": ["lock"], "verbs": ["read"], "where": "x"}]}},
    }
    with pytest.raises(ValidationError, match=r"^unknown key spec\.allow\.rules\[0\]\.where$"):
        decode_resource(document)


def test_unknown_kind_is_refused() -> None:
    """A kind lockd does not know is refused, naming the supported ones."""
    with pytest.raises(ValidationError, match=r'^unsupported kind "locks" \(supported: lock, '):
        decode_resource({**lock_document(), "kind": "locks"})


def test_missing_kind_is_refused() -> None:
    """A document without kind is refused."""
    document = lock_document()
    del document["kind"]
    with pytest.raises(ValidationError, match=r"^missing kind$"):
        decode_resource(document)


@pytest.mark.parametrize("version", ["v1", "v3", "V2", ""])
def test_wrong_lock_version_is_refused(version: str) -> None:
    """Locks are version v2 only."""
    with pytest.raises(ValidationError, match=rf'^unsupported lock version "{version}"'):
        decode_resource({**lock_document(), "version": version})


def test_missing_version_is_refused() -> None:
    """A lock document without a version is refused."""
    document = lock_document()
    del document["version"]
    with pytest.raises(ValidationError, match=r'^unsupported lock version ""'):
        decode_resource(document)


def test_role_versions_v5_to_v7_are_accepted_and_v4_is_refused() -> None:
    """Roles accept Teleport's v5, v6 and v7."""
    base = {"kind": "role", "metadata": {"name": "r"}}
    for version in ("v5", "v6", "v7"):
        assert decode_resource({**base, "version": version}) == Role(name="r")
    with pytest.raises(ValidationError, match='unsupported role version "v4"'):
        decode_resource({**base, "version": "v4"})


def test_role_with_unsupported_lock_mode_is_refused() -> None:
    """`options.lock: strictest` is `locking mode "strictest" not supported`."""
    document = {
        "kind": "role",
        "version": "v5",
        "metadata": {"name": "r"},
        "spec": {"options": {"lock": "strictest"}},
    }
    with pytest.raises(ValidationError, match=r'^locking mode "strictest" not supported$'):
        decode_resource(document)


def test_role_rule_with_unknown_verb_is_refused() -> None:
    """Rule verbs are list, create, read, update, delete or *."""
    document = {
        "kind": "role",
        "version": "v5",
        "metadata": {"name": "r"},
        "spec": {"allow": {"rules": [{"resources": ["lock"], "verbs": ["write"]}]}},
    }
    with pytest.raises(ValidationError, match='unknown verb "write" in role rule'):
        decode_resource(document)


def test_cap_with_another_name_is_refused() -> None:
    """The preference is a singleton named cluster-auth-preference."""
    document = {
        "kind": "cluster_auth_preference",
        "version": "v2",
        "metadata": {"name": "other"},
        "spec": {},
    }
    with pytest.raises(ValidationError, match='must be named "cluster-auth-preference"'):
        decode_resource(document)


def test_cap_with_bad_locking_mode_is_refused() -> None:
    """`locking_mode: paranoid` is `locking mode "paranoid" not supported`."""
    text = "kind: cluster_auth_preference\nversion: v2\nspec:\n  locking_mode: paranoid\n"
    assert refused(text).endswith('locking mode "paranoid" not supported')


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (None, "the document must be a mapping, got None"),
        ([], "the document must be a mapping, got a list"),
        ("kind: lock", "the document must be a mapping, got 'kind: lock'"),
        ({1: "x"}, "the document has a non-string key number 1"),
    ],
)
def test_non_mapping_documents_are_refused_with_a_readable_message(
    document: object, expected: str
) -> None:
    """The root is named `the document` in messages (its path is empty)."""
    with pytest.raises(ValidationError) as caught:
        decode_resource(document)
    assert str(caught.value) == expected


# --- the text codec ------------------------------------------------------------------


def test_empty_text_has_no_documents() -> None:
    """An empty stream, or one of comments and separators only, is refused."""
    assert refused("") == "<stdin>: no documents found"
    assert refused("# nothing\n---\n---\n") == "<stdin>: no documents found"
    assert refused("[]") == "<stdin>: no documents found"


def test_errors_name_the_source_and_the_document_position() -> None:
    """The failing document is numbered from 1 and prefixed by the source name."""
    text = SPEC_LOCK_YAML + "---\n" + lock_yaml("  message: no\n")
    with pytest.raises(ValidationError) as caught:
        parse_documents(text, "locks.yaml")
    assert str(caught.value).startswith("locks.yaml: document 2: spec.message must be a string")


@pytest.mark.parametrize(
    "text",
    [
        "kind: [",
        "{not json",
        "\x00",
        "!!python/object:os.system x",
        "a: !!bool foo",
        "a: !!timestamp foo",
        "a: !!int ''",
        "a: !!int foo",
        "a: !!float _",
        "a: !!int +",
        "a: 2021-08-14T22:27:00+99:00",
        "kind: " + "1" * 5000,
        '{"kind": ' + "1" * 5000 + "}",
        "[" * 100_000,
        "a: " + "[" * 100_000,
        '{"kind": "lock", "version": "v2", "metadata": {"name": "x"}, '
        '"spec": {"target": {"user": "a"}, "message": "\\ud800"}}',
        '{"kind": "lock", "version": "v2", "metadata": {"name": "x"}, '
        '"spec": {"target": {"user": "\\udc00"}}}',
        lock_yaml("  expires: 0001-01-01T00:00:00+01:00\n"),
    ],
)
def test_hostile_text_raises_only_validation_error(text: str) -> None:
    """Parser quirks (PyYAML constructor errors, int digit limits, recursion, lone
    surrogates, out-of-range times) surface as ValidationError, never anything else."""
    with pytest.raises(ValidationError, match=r"^<stdin>: "):
        parse_documents(text)


def test_render_one_json_is_a_bare_object_and_render_documents_json_an_array() -> None:
    """`get lock/<name>` prints an object, `get locks` an array (as tctl does)."""
    assert json.loads(render_one(SPEC_LOCK, Format.JSON)) == encode_resource(SPEC_LOCK)
    assert json.loads(render_documents([SPEC_LOCK], Format.JSON)) == [encode_resource(SPEC_LOCK)]


def test_rendered_yaml_keeps_teleports_key_order() -> None:
    """kind, version, metadata, spec; spec fields in SPEC §1 order; times quoted, with Z."""
    assert render_one(SPEC_LOCK, Format.YAML) == (
        "kind: lock\n"
        "version: v2\n"
        "metadata:\n"
        "  name: dc7cee9d-fe5e-4534-a90d-db770f0234a1\n"
        "spec:\n"
        "  target:\n"
        "    user: foo@example.com\n"
        "  message: Suspicious activity.\n"
        "  expires: '2021-08-14T22:27:00Z'\n"
        "  created_at: '2021-08-14T12:27:00Z'\n"
        "  created_by: alice\n"
    )


def test_rendered_yaml_quotes_strings_yaml_would_misread() -> None:
    """`no`, `1:30`, `null` and `~` are quoted on output so they read back as strings."""
    lock = Lock(name="no", target=LockTarget(user="null", login="1:30", role="~"), message="yes")
    text = render_one(lock, Format.YAML)
    loaded = yaml.safe_load(text)
    assert loaded["metadata"]["name"] == "no"
    assert loaded["spec"]["target"] == {"user": "null", "role": "~", "login": "1:30"}
    assert loaded["spec"]["message"] == "yes"


def test_encoded_lock_lists_target_fields_in_section_1_order() -> None:
    """Target keys come out in TARGET_FIELDS order."""
    lock = Lock(name="x", target=LockTarget(join_token="j", user="u", server_id="s"))
    assert list(encode_resource(lock)["spec"]["target"]) == ["user", "server_id", "join_token"]
    assert set(encode_resource(lock)["spec"]["target"]) <= set(TARGET_FIELDS)


def test_encoded_lock_omits_empty_optional_fields() -> None:
    """No message, expires, created_at or created_by keys when they are unset."""
    lock = Lock(name="x", target=LockTarget(user="u"))
    assert encode_resource(lock)["spec"] == {"target": {"user": "u"}}


@pytest.mark.parametrize("tricky", TRICKY_STRINGS)
@pytest.mark.parametrize("fmt", list(Format))
def test_tricky_strings_survive_the_text_round_trip(tricky: str, fmt: Format) -> None:
    """Each YAML-ambiguous or unusual string reads back as itself, in YAML and JSON."""
    plain = is_plain_text(tricky)
    lock = Lock(
        name=tricky if plain and " " not in tricky else "n",
        target=LockTarget(user=tricky if plain else "u", role=tricky if plain else "r"),
        message=tricky if forbidden_in_message(tricky) is None else "",
        created_by=tricky,
    )
    assert parse_documents(render_documents([lock], fmt)) == [lock]
    assert parse_documents(render_one(lock, fmt)) == [lock]


def test_next_line_character_survives_the_yaml_round_trip() -> None:
    """U+0085 (a YAML 1.1 line break) is escaped on output, not folded into a space
    (created_by is the one lock field the text rule leaves free)."""
    lock = Lock(name="n", target=LockTarget(user="a"), created_by="x\x85\x85y\x85")
    text = render_one(lock, Format.YAML)
    assert parse_documents(text) == [lock]


@given(resources)
def test_decode_inverts_encode(resource: Resource) -> None:
    """decode_resource(encode_resource(r)) == r for every valid resource."""
    assert decode_resource(encode_resource(resource)) == resource


@given(st.lists(resources, min_size=1, max_size=3), st.sampled_from(Format))
def test_text_round_trip_returns_the_same_resources(items: list[Resource], fmt: Format) -> None:
    """parse_documents(render_documents(rs)) == rs, in YAML and JSON."""
    assert parse_documents(render_documents(items, fmt)) == items


@given(resources, st.sampled_from(Format))
def test_render_one_reads_back(resource: Resource, fmt: Format) -> None:
    """What `get kind/name` prints feeds `create -f` unchanged."""
    assert parse_documents(render_one(resource, fmt)) == [resource]


@given(locks)
def test_round_trip_keeps_times_as_the_same_instants_in_utc(lock: Lock) -> None:
    """Times in any zone come back as equal instants, in UTC."""
    back = decode_resource(encode_resource(lock))
    assert isinstance(back, Lock)
    for before, after in ((lock.expires, back.expires), (lock.created_at, back.created_at)):
        assert before == after
        assert after is None or after.tzinfo is UTC


# --- arbitrary input -----------------------------------------------------------------

_VOCABULARY = (
    "kind",
    "version",
    "metadata",
    "name",
    "spec",
    "target",
    "message",
    "expires",
    "created_at",
    "created_by",
    "allow",
    "deny",
    "rules",
    "resources",
    "verbs",
    "options",
    "lock",
    "roles",
    "locking_mode",
    *TARGET_FIELDS,
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.sampled_from(
        ["lock", "role", "user", "cluster_auth_preference", "v2", "v5", "strict", "best_effort"]
    ),
    st.datetimes(
        timezones=st.none()
        | st.just(UTC)
        | st.just(timezone(timedelta(hours=1)))
        | st.just(timezone(timedelta(hours=-1)))
    ),
    st.dates(),
    st.binary(max_size=4),
)
nested_data = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_VOCABULARY) | st.text(max_size=4), children, max_size=5)
    ),
    max_leaves=20,
)


@given(nested_data)
def test_decode_resource_raises_only_validation_error_on_arbitrary_data(data: object) -> None:
    """Any parsed data is a resource or a ValidationError, never another exception."""
    with contextlib.suppress(ValidationError):
        decode_resource(data)


@given(
    st.sampled_from(["lock", "role", "user", "cluster_auth_preference"]),
    st.sampled_from(["metadata", "spec"]),
    st.dictionaries(st.sampled_from(_VOCABULARY), nested_data, max_size=4),
)
def test_decode_resource_raises_only_validation_error_on_near_valid_documents(
    kind: str, section: str, body: dict[str, object]
) -> None:
    """Documents of a known kind and version with arbitrary metadata or spec never crash."""
    version = {"lock": "v2", "role": "v5", "user": "v2", "cluster_auth_preference": "v2"}[kind]
    document: dict[str, object] = {
        "kind": kind,
        "version": version,
        "metadata": {"name": "n"},
        "spec": {"target": {"user": "u"}} if kind == "lock" else {},
    }
    document[section] = body
    with contextlib.suppress(ValidationError):
        decode_resource(document)


@given(
    st.dictionaries(st.sampled_from(TARGET_FIELDS), nested_data, max_size=3),
    st.dictionaries(st.sampled_from(_VOCABULARY[6:10]), nested_data, max_size=3),
)
def test_decode_resource_raises_only_validation_error_on_arbitrary_lock_specs(
    target: dict[str, object], fields: dict[str, object]
) -> None:
    """Arbitrary target values and spec fields of a lock never crash the decoder."""
    document = lock_document(target=target, **fields)
    with contextlib.suppress(ValidationError):
        decode_resource(document)


@given(st.text(max_size=60))
def test_parse_documents_raises_only_validation_error_on_any_text(text: str) -> None:
    """Any text is a list of resources or a ValidationError."""
    with contextlib.suppress(ValidationError):
        assert parse_documents(text)


_YAMLISH = st.text(
    alphabet="{}[]:-,!&*?|>#'\"\n %@`.0123456789+Tabeklnorsuvxy~_\\\t",
    max_size=60,
)
_PREFIXES = st.sampled_from(
    [
        "",
        "kind: lock\nversion: v2\nmetadata:\n  name: ",
        "kind: lock\nversion: v2\nmetadata: {name: x}\nspec:\n  target:\n    user: ",
        "kind: lock\nversion: v2\nmetadata: {name: x}\nspec:\n  target: {user: u}\n  expires: ",
        "kind: role\nversion: v5\nmetadata: {name: r}\nspec:\n  options:\n    lock: ",
        "a: !!int ",
        "a: !!float ",
        "a: !!timestamp ",
        "a: !!bool ",
        "a: !!binary ",
        '{"kind": "lock", "version": "v2", "metadata": {"name": ',
    ]
)


@given(_PREFIXES, _YAMLISH)
def test_parse_documents_raises_only_validation_error_on_yaml_like_text(
    prefix: str, text: str
) -> None:
    """YAML/JSON-looking text, including tagged scalars, never crashes the codec."""
    with contextlib.suppress(ValidationError):
        assert parse_documents(prefix + text)


@given(
    st.sampled_from(["2021-08-14", "0001-01-01", "9999-12-31", "2021-02-30", "2021-13-01"]),
    st.sampled_from(["", "T00:00:00", " 23:59:59", "T22:27:00.5"]),
    st.sampled_from(["", "Z", "+01:00", "-01:00", "+23", "-99:00"]),
)
def test_unquoted_yaml_timestamps_never_crash_the_codec(day: str, clock: str, zone: str) -> None:
    """Unquoted YAML timestamps of every shape give a lock or a ValidationError."""
    try:
        lock = parse_documents(lock_yaml(f"  expires: {day}{clock}{zone}\n"))[0]
    except ValidationError:
        return
    assert isinstance(lock, Lock)
    assert lock.expires is not None
    assert lock.expires.tzinfo is UTC
    assert zone  # a timestamp without a zone is never accepted

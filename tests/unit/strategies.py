"""Hypothesis strategies for the domain: valid resources, identities and hostile input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

from lockd.domain.lock import (
    TARGET_FIELDS,
    Lock,
    LockTarget,
    forbidden_in_message,
    is_plain_text,
)
from lockd.domain.modes import LockingMode
from lockd.domain.resources import (
    RULE_RESOURCES,
    RULE_VERBS,
    ClusterAuthPreference,
    Role,
    Rule,
    User,
)

# Strings that YAML 1.1 would read as something else when left unquoted.
TRICKY_STRINGS = (
    "no",
    "yes",
    "off",
    "on",
    "y",
    "n",
    "true",
    "False",
    "1:30",
    "2021-08-14T22:27:00Z",
    "2021-08-14",
    "null",
    "~",
    "0x1f",
    "0o17",
    "1e3",
    ".inf",
    ".nan",
    "-",
    "<<",
    "=",
    "!tag",
    "&anchor",
    "*alias",
    "'quoted'",
    '"dq"',
    "#comment",
    "a: b",
    "- item",
    "[x]",
    "{x}",
    "%TAG",
    "@at",
    "`tick`",
    "foo@example.com",
    "日本語",
    "Ünïcødé",
    "😀",
    "\u2028",
    "\u0085",
    "\ufeff",
)

T0 = datetime(2021, 8, 14, 22, 27, tzinfo=UTC)

# The text rule of lockd.domain.lock: names and target values are plain text
# (printable, no blank fillers); messages refuse controls but tab and newline.
BLANK_FILLERS = "\u115f\u1160\u2800\u3164\uffa0"
_NAME_ALPHABET = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
    exclude_characters="/" + BLANK_FILLERS,
)
# Target values: plain text, the ASCII space included.
_VALUE_ALPHABET = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
    exclude_characters=BLANK_FILLERS,
    include_characters=" ",
)

names = st.one_of(
    st.sampled_from([s for s in TRICKY_STRINGS if is_plain_text(s) and " " not in s]),
    st.text(_NAME_ALPHABET, min_size=1, max_size=12),
)
target_values = st.one_of(
    st.sampled_from([s for s in TRICKY_STRINGS if is_plain_text(s)]),
    st.text(_VALUE_ALPHABET, min_size=1, max_size=12),
)
any_texts = st.one_of(
    st.just(""),
    st.sampled_from(TRICKY_STRINGS),
    st.text(st.characters(codec="utf-8"), max_size=24),
)
texts = any_texts.filter(lambda text: forbidden_in_message(text) is None)

fixed_zones = st.builds(
    timezone,
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda minutes: timedelta(minutes=minutes)
    ),
)
# Aware datetimes that stay within datetime's range once converted to UTC.
aware_datetimes = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=fixed_zones
)

lock_targets = st.dictionaries(
    st.sampled_from(TARGET_FIELDS), target_values, min_size=1, max_size=4
).map(lambda fields: LockTarget(**fields))

locks = st.builds(
    Lock,
    name=names,
    target=lock_targets,
    message=texts,
    expires=st.none() | aware_datetimes,
    created_at=st.none() | aware_datetimes,
    created_by=any_texts,
)

rules = st.builds(
    Rule,
    resources=st.lists(st.sampled_from(sorted(RULE_RESOURCES)), min_size=1, max_size=3).map(tuple),
    verbs=st.lists(st.sampled_from(sorted(RULE_VERBS)), min_size=1, max_size=3).map(tuple),
)
roles = st.builds(
    Role,
    name=names,
    allow=st.lists(rules, max_size=2).map(tuple),
    deny=st.lists(rules, max_size=2).map(tuple),
    lock_mode=st.none() | st.sampled_from(LockingMode),
)
users = st.builds(User, name=names, roles=st.lists(names, max_size=3).map(tuple))
cluster_auth_preferences = st.builds(
    ClusterAuthPreference, locking_mode=st.sampled_from(LockingMode)
)
resources = st.one_of(locks, roles, users, cluster_auth_preferences)

"""Unit tests of lockctl's pure pieces: flags → target, references, tables, --wait rule."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime

import pytest

from lockd.cli.commands.unlock import exact_and_partial
from lockd.cli.console import Console
from lockd.cli.errors import EXIT_FAILURE, EXIT_USAGE, UsageError, exit_code_for
from lockd.cli.main import build_parser
from lockd.cli.refs import Ref, parse_ref
from lockd.cli.tables import cell, render_pairs, render_table, width
from lockd.cli.targets import target_from_args
from lockd.cli.timeflags import expiry
from lockd.cli.wait import WaitState, has_applied
from lockd.client import AgentInfo, ClusterStatus
from lockd.domain.errors import AccessDeniedError, NotFoundError, ValidationError
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.resources import Kind


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_every_target_flag_maps_to_its_field() -> None:
    args = parse(
        "lock",
        "--user=u",
        "--role=r",
        "--login=l",
        "--mfa-device=m",
        "--device",
        "d",
        "--server-id=s",
        "--windows-desktop=w",
        "--access-request=a",
        "--bot-instance-id=b",
        "--join-token=j",
    )
    assert target_from_args(args) == LockTarget(
        user="u",
        role="r",
        login="l",
        mfa_device="m",
        device="d",
        server_id="s",
        windows_desktop="w",
        access_request="a",
        bot_instance_id="b",
        join_token="j",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lock"], "at least one target field must be set"),
        (["lock", "--role="], "--role must not be empty"),
        (["lock", "--user=a\nb"], "lock target user contains control characters"),
    ],
)
def test_bad_targets(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        target_from_args(parse(*argv))
    assert str(caught.value) == message


def test_repeated_target_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse("unlock", "--user=a", "--user=b")
    assert caught.value.code == EXIT_USAGE
    assert capsys.readouterr().err.endswith("ERROR: --user given more than once\n")


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("locks", Ref(Kind.LOCK)),
        ("lock/abc", Ref(Kind.LOCK, "abc")),
        ("locks/abc", Ref(Kind.LOCK, "abc")),
        ("roles", Ref(Kind.ROLE)),
        ("role/locksmith", Ref(Kind.ROLE, "locksmith")),
        ("users", Ref(Kind.USER)),
        ("user/alice@example.com", Ref(Kind.USER, "alice@example.com")),
        ("cap", Ref(Kind.CLUSTER_AUTH_PREFERENCE)),
        ("cluster_auth_preference", Ref(Kind.CLUSTER_AUTH_PREFERENCE)),
        ("cap/cluster-auth-preference", Ref(Kind.CLUSTER_AUTH_PREFERENCE)),
        ("all", Ref(None)),
    ],
)
def test_parse_ref(text: str, ref: Ref) -> None:
    assert parse_ref(text) == ref


@pytest.mark.parametrize(
    ("text", "need_name", "message"),
    [
        ("foo/bar", False, 'unknown resource kind "foo"'),
        ("", False, 'unknown resource kind ""'),
        ("lock/", False, 'empty resource name in "lock/": use lock/<name>'),
        ("lock/a/b", False, "may not contain '/'"),
        ("all/x", False, '"all" takes no name'),
        ("cap/other", False, 'named "cluster-auth-preference", got "other"'),
        ("locks", True, '"locks" names no single resource'),
        ("all", True, '"all" names no single resource'),
    ],
)
def test_parse_ref_errors(text: str, need_name: bool, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_ref(text, need_name=need_name)
    assert message in str(caught.value)


def test_table_alignment_and_escaping() -> None:
    table = render_table(("A", "Long header"), [["x", "1"], ["wide value", "two\nlines"]])
    assert table == (
        "A           Long header\n----------  -----------\nx           1\nwide value  two\\nlines\n"
    )
    assert render_table(("ID",), []) == "ID\n--\n"
    assert cell("bell\x07") == "bell\\x07"
    assert width("日本") == 4
    assert render_table(("N",), [["日本"]]) == "N\n----\n日本\n"
    assert render_pairs([("Cluster", "c"), ("CA pin", "sha256:ab")]) == (
        "Cluster c\nCA pin  sha256:ab\n"
    )


def test_expiry_rules() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert expiry(None, None, now) is None
    assert expiry("1h30m", None, now) == datetime(2030, 1, 1, 13, 30, 1, tzinfo=UTC)
    assert expiry(None, "2030-01-02T00:00:00+02:00", now) == datetime(2030, 1, 1, 22, tzinfo=UTC)
    with pytest.raises(UsageError, match="use only one of --expires and --ttl"):
        expiry("1h", "2031-01-01T00:00:00Z", now)


def agent(server_id: str, applied: int, lag: int, connected: bool = True) -> AgentInfo:
    return AgentInfo(server_id, "ipv4:127.0.0.1:1", "synced", applied, lag, None, connected)


def status(revision: int, *agents: AgentInfo) -> ClusterStatus:
    return ClusterStatus("c", "v", "", "sqlite", True, "e1", revision, agents)


def test_has_applied_needs_the_revision_in_the_same_epoch() -> None:
    assert has_applied(agent("a", 5, 0), status(5), 5)
    assert has_applied(agent("a", 6, 0), status(6), 5)
    assert not has_applied(agent("a", 4, 1), status(5), 5)
    # Another epoch: the server reports lag = its revision, whatever was applied.
    assert not has_applied(agent("a", 7, 5), status(5), 5)


def test_wait_state_tracks_agents_seen_connected() -> None:
    state = WaitState(revision=5)
    state.observe(status(5, agent("a", 5, 0), agent("b", 4, 1), agent("old", 1, 4, False)))
    assert sorted(state.seen) == ["a", "b"]  # never-connected "old" is not waited for
    assert state.confirmed == {"a"}
    state.observe(status(5, agent("a", 5, 0), agent("b", 4, 1, connected=False)))
    assert state.describe_pending() == "b (at revision 4, disconnected)"
    state.observe(status(6, agent("a", 6, 0), agent("b", 6, 0), agent("c", 6, 0)))
    assert state.pending() == []


def test_exact_and_partial() -> None:
    exact = Lock("1", LockTarget(user="m"))
    union = Lock("2", LockTarget(user="m", server_id="s"))
    other = Lock("3", LockTarget(user="x"))
    assert exact_and_partial([exact, union, other], LockTarget(user="m")) == ([exact], [union])
    assert exact_and_partial([exact, union], LockTarget(user="m", server_id="s")) == (
        [union],
        [],
    )


def test_exit_codes() -> None:
    assert exit_code_for(ValidationError("x")) == EXIT_USAGE
    assert exit_code_for(UsageError("x")) == EXIT_USAGE
    assert exit_code_for(NotFoundError("x")) == EXIT_FAILURE
    assert exit_code_for(AccessDeniedError("x")) == EXIT_FAILURE


def test_console_confirm() -> None:
    err = io.StringIO()
    console = Console(out=io.StringIO(), err=err, stdin=io.StringIO("Y\n"))
    assert console.confirm("Delete 1 lock(s)?")
    assert err.getvalue() == "Delete 1 lock(s)? [y/N] "
    assert not console.interactive()
    declined = Console(out=io.StringIO(), err=io.StringIO(), stdin=io.StringIO("yep\n"))
    assert not declined.confirm("Delete 1 lock(s)?")


def test_wait_default_and_value() -> None:
    assert parse("lock", "--user=a").wait is None
    assert parse("lock", "--user=a", "--wait").wait == "30s"
    assert parse("lock", "--wait=5s", "--user=a").wait == "5s"
    assert parse("lock", "--wait", "--user=a").wait == "30s"


def test_error_lines_do_not_obey_escape_sequences() -> None:
    err = io.StringIO()
    Console(out=io.StringIO(), err=err).error('lock targeting User:"x" is in force: \x1b[2J\tok\n')
    assert err.getvalue() == 'ERROR: lock targeting User:"x" is in force: \\x1b[2J\tok\n\n'


def test_status_text_has_tctl_shape_with_ca_pin() -> None:
    from lockd.cli.commands.status import render_text

    now = datetime(2030, 1, 1, tzinfo=UTC)
    pin = "sha256:" + "ab" * 32
    acked = AgentInfo("node-a", "ipv4:10.0.0.7:5", "synced", 7, 0, now, True)
    gone = AgentInfo("node-b", "ipv4:10.0.0.8:6", "synced", 3, 4, None, False)
    text = render_text(
        ClusterStatus(
            "teleport.example.com", "15.4.24", pin, "sqlite", True, "e", 7, (gone, acked)
        ),
        now,
    )
    assert text == (
        "Cluster teleport.example.com\n"
        "Version 15.4.24\n"
        f"CA pin  {pin}\n"
        "\n"
        "Store    sqlite (healthy)\n"
        "Revision 7\n"
        "Epoch    e\n"
        "Agents   1 connected, 1 disconnected\n"
        "\n"
        "Server ID  Address          State         Applied  Lag  Last ack\n"
        "---------  ---------------  ------------  -------  ---  --------\n"
        "node-a     ipv4:10.0.0.7:5  synced        7        0    0.0s ago\n"
        "node-b     ipv4:10.0.0.8:6  disconnected  3        4    never\n"
    )

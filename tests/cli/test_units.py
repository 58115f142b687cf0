"""Unit tests of lockctl's pure pieces: flags → target, references, tables, --wait rule."""

from __future__ import annotations

import argparse
import io
import stat
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockd.cli.app import build_parser
from lockd.cli.commands.auth import check_destination, write_private
from lockd.cli.commands.tokens import JoinAddresses, dialable, in_words, render_text
from lockd.cli.commands.unlock import exact_and_partial
from lockd.cli.connection import check_address, check_valid, remote_reason
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_FAILURE, EXIT_USAGE, OperationError, UsageError, exit_code_for
from lockd.cli.refs import Ref, parse_ref
from lockd.cli.tables import cell, render_pairs, render_table, width
from lockd.cli.targets import target_from_args
from lockd.cli.timeflags import expiry
from lockd.cli.wait import WaitState, has_applied
from lockd.client import AgentInfo, ClusterStatus, IdentityFile
from lockd.domain.errors import (
    AccessDeniedError,
    NotFoundError,
    UnauthenticatedError,
    ValidationError,
)
from lockd.domain.lock import Lock, LockTarget
from lockd.domain.resources import Kind
from lockd.pki import CertIdentity, ClusterCA, IdentityKind, cert_pem, key_pem, new_key


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_every_target_flag_maps_to_its_field() -> None:
    """Each target flag of `lock` sets the LockTarget field of the same name."""
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
        (
            ["lock", "--user=a\nb"],
            "lock target user contains control characters (U+000A: control, format, separator and "
            "blank characters are refused)",
        ),
    ],
)
def test_bad_targets(argv: list[str], message: str) -> None:
    """Missing or malformed target flags are usage errors with a precise message."""
    with pytest.raises(UsageError) as caught:
        target_from_args(parse(*argv))
    assert str(caught.value) == message


def test_repeated_target_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A target flag given twice is refused by the parser."""
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
    """Resource references (`kind/name`, plural kinds, aliases) parse to the right kind and name."""
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
    """Unknown kinds and missing names in references are usage errors."""
    with pytest.raises(UsageError) as caught:
        parse_ref(text, need_name=need_name)
    assert message in str(caught.value)


def test_table_alignment_and_escaping() -> None:
    """Tables align columns and escape newlines and control characters in cells."""
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
    """--ttl and --expires compute the expiry, exclusive of each other, never in the past."""
    now = datetime(2030, 1, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    assert expiry(None, None, now) is None
    assert expiry("1h30m", None, now) == datetime(2030, 1, 1, 13, 30, 1, tzinfo=UTC)
    assert expiry(None, "2030-01-02T00:00:00+02:00", now) == datetime(2030, 1, 1, 22, tzinfo=UTC)
    with pytest.raises(UsageError, match="use only one of --expires and --ttl"):
        expiry("1h", "2031-01-01T00:00:00Z", now)


def agent(
    server_id: str, applied: int, lag: int, connected: bool = True, epoch: str = "e1"
) -> AgentInfo:
    return AgentInfo(server_id, "ipv4:127.0.0.1:1", "synced", applied, lag, None, connected, epoch)


def status(revision: int, *agents: AgentInfo) -> ClusterStatus:
    return ClusterStatus("c", "v", "", "sqlite", True, "e1", revision, agents)


def test_has_applied_needs_the_revision_in_the_same_epoch() -> None:
    """An agent has applied a revision only if it acknowledged it in the server's epoch."""
    assert has_applied(agent("a", 5, 0), status(5), 5)
    assert has_applied(agent("a", 6, 0), status(6), 5)
    assert not has_applied(agent("a", 4, 1), status(5), 5)
    # Another epoch (the agent's ack is from an older history): never, whatever revision.
    assert not has_applied(agent("a", 7, 5, epoch="e0"), status(5), 5)
    assert not has_applied(agent("a", 7, 0, epoch=""), status(5), 5)


def test_pending_agents_name_another_epoch() -> None:
    """Agents acknowledging another epoch stay pending and are named as such."""
    state = WaitState(revision=5)
    state.observe(status(5, agent("a", 7, 5, epoch="e0"), agent("b", 4, 1)))
    assert state.describe_pending() == (
        "a (at revision 7 of another epoch, synced), b (at revision 4, synced)"
    )


def test_wait_state_tracks_agents_seen_connected() -> None:
    """The wait counts agents connected when it started and those that connect later."""
    state = WaitState(revision=5)
    state.observe(status(5, agent("a", 5, 0), agent("b", 4, 1), agent("old", 1, 4, False)))
    assert sorted(state.seen) == ["a", "b"]  # never-connected "old" is not waited for
    assert state.confirmed == {"a"}
    state.observe(status(5, agent("a", 5, 0), agent("b", 4, 1, connected=False)))
    assert state.describe_pending() == "b (at revision 4, disconnected)"
    state.observe(status(6, agent("a", 6, 0), agent("b", 6, 0), agent("c", 6, 0)))
    assert state.pending() == []


def test_exact_and_partial() -> None:
    """unlock's matcher separates locks on exactly the target from wider locks that include it."""
    exact = Lock("1", LockTarget(user="m"))
    union = Lock("2", LockTarget(user="m", server_id="s"))
    other = Lock("3", LockTarget(user="x"))
    assert exact_and_partial([exact, union, other], LockTarget(user="m")) == ([exact], [union])
    assert exact_and_partial([exact, union], LockTarget(user="m", server_id="s")) == (
        [union],
        [],
    )


def test_exit_codes() -> None:
    """Validation and usage errors exit 2; every other lockd error exits 1."""
    assert exit_code_for(ValidationError("x")) == EXIT_USAGE
    assert exit_code_for(UsageError("x")) == EXIT_USAGE
    assert exit_code_for(NotFoundError("x")) == EXIT_FAILURE
    assert exit_code_for(AccessDeniedError("x")) == EXIT_FAILURE


def test_console_confirm() -> None:
    """Console.confirm accepts y/yes in any case and treats anything else as no."""
    err = io.StringIO()
    console = Console(out=io.StringIO(), err=err, stdin=io.StringIO("Y\n"))
    assert console.confirm("Delete 1 lock(s)?")
    assert err.getvalue() == "Delete 1 lock(s)? [y/N] "
    assert not console.interactive()
    declined = Console(out=io.StringIO(), err=io.StringIO(), stdin=io.StringIO("yep\n"))
    assert not declined.confirm("Delete 1 lock(s)?")


def test_wait_default_and_value() -> None:
    """--wait without a value waits 30s; with a value it waits that long."""
    assert parse("lock", "--user=a").wait is None
    assert parse("lock", "--user=a", "--wait").wait == "30s"
    assert parse("lock", "--wait=5s", "--user=a").wait == "5s"
    assert parse("lock", "--wait", "--user=a").wait == "30s"


def test_error_lines_do_not_obey_escape_sequences() -> None:
    """Error lines print control characters escaped, so a message cannot drive the terminal."""
    err = io.StringIO()
    Console(out=io.StringIO(), err=err).error('lock targeting User:"x" is in force: \x1b[2J\tok\n')
    assert err.getvalue() == 'ERROR: lock targeting User:"x" is in force: \\x1b[2J\tok\n\n'


def test_status_text_has_tctl_shape_with_ca_pin() -> None:
    """status text has tctl's shape, including the CA pin line."""
    from lockd.cli.commands.status import render_text

    now = datetime(2030, 1, 1, tzinfo=UTC)
    pin = "sha256:" + "ab" * 32
    acked = AgentInfo("node-a", "ipv4:10.0.0.7:5", "synced", 7, 0, now, True, last_frame=now)
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
        "Server ID  Address          State         Applied  Lag  Last ack  Last seen\n"
        "---------  ---------------  ------------  -------  ---  --------  ---------\n"
        "node-a     ipv4:10.0.0.7:5  synced        7        0    0.0s ago  0.0s ago\n"
        "node-b     ipv4:10.0.0.8:6  disconnected  3        4    never     never\n"
    )


# -- identities, tokens and remote connections ------------------------------------------


def identity_file(ttl: timedelta = timedelta(hours=1), now: datetime | None = None) -> IdentityFile:
    moment = now or datetime.now(UTC)
    with tempfile.TemporaryDirectory() as directory:  # the CA stays usable in memory
        ca = ClusterCA.load_or_create(Path(directory), "unit.test", moment)
    key = new_key()
    cert = ca.issue(key.public_key(), CertIdentity(IdentityKind.USER, "alice"), moment, ttl)
    return IdentityFile(key_pem(key), cert_pem(cert), ca.cert_pem)


def test_identity_file_round_trip() -> None:
    """An identity file renders and parses back to the same key, certificate and CA."""
    identity = identity_file()
    rendered = identity.render()
    assert rendered.count(b"-----BEGIN ") == 3
    assert rendered.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert IdentityFile.parse(b"# a comment\n" + rendered, "x.pem") == identity
    with pytest.raises(ValidationError, match="the certificate was not issued by the CA"):
        IdentityFile.parse(identity.key_pem + identity.cert_pem + identity_file().ca_pem)
    with pytest.raises(ValidationError, match=r"^x\.pem: 2 private keys"):
        IdentityFile.parse(identity.key_pem + rendered, "x.pem")


def test_check_valid_names_the_expiry_and_the_fix() -> None:
    """An expired or not-yet-valid identity is refused with its validity period and how to renew."""
    identity = identity_file(timedelta(hours=1), datetime(2030, 1, 1, tzinfo=UTC))
    check_valid(identity, Path("a.pem"), datetime(2030, 1, 1, 0, 30, tzinfo=UTC))
    with pytest.raises(UnauthenticatedError) as expired:
        check_valid(identity, Path("a.pem"), datetime(2030, 1, 1, 1, tzinfo=UTC))
    assert str(expired.value) == (
        "the identity in a.pem expired at 2030-01-01T01:00:00Z; sign a new one on the auth "
        "host: lockctl auth sign --user=alice --out=a.pem"
    )
    assert exit_code_for(expired.value) == EXIT_FAILURE
    with pytest.raises(UnauthenticatedError, match="not valid before 2029-12-31T23:59:00Z"):
        check_valid(identity, Path("a.pem"), datetime(2029, 12, 31, tzinfo=UTC))


@pytest.mark.parametrize("address", ["auth.example.com:3025", "10.0.0.1:1", "[::1]:3025"])
def test_good_addresses(address: str) -> None:
    """Well-formed HOST:PORT addresses for --auth-server are accepted."""
    check_address(address)


@pytest.mark.parametrize("address", ["", "host", ":3025", "host:", "host:0", "host:65536"])
def test_bad_addresses(address: str) -> None:
    """Malformed --auth-server addresses are usage errors naming the expected form."""
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        check_address(address)


def test_remote_reasons() -> None:
    """Transport failures are reduced to the useful reason for the user."""
    prefix = "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.0.0.1:3025: "
    plain = remote_reason(
        prefix + "Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:"
        "SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification "
        "context",
        Path("a.pem"),
    )
    assert plain == (
        "TLS handshake failed: WRONG_VERSION_NUMBER: Invalid certificate verification context "
        "(the server does not speak TLS there; does it run with auth_service.insecure?)"
    )
    closed = remote_reason(prefix.replace("UNKNOWN", "UNAVAILABLE") + "Socket closed", Path("a"))
    assert closed.startswith("the server closed the connection: it refused the certificate in a")
    name = remote_reason(prefix + "Peer name x.example.com is not in peer certificate", Path("a"))
    assert name.startswith("TLS: Peer name x.example.com is not in peer certificate (dial a")
    assert remote_reason("connect: Connection refused (111)", Path("a")).endswith(
        "(is the auth server running, with auth_service.listen_addr there?)"
    )


def test_token_wording_and_addresses() -> None:
    """Token TTLs are worded as tctl does and join addresses are derived from the auth address."""
    assert in_words(timedelta(hours=1)) == "60 minutes"
    assert in_words(timedelta(minutes=1)) == "1 minute"
    assert in_words(timedelta(seconds=90)) == "1m30s"
    assert in_words(timedelta(seconds=20)) == "20s"
    assert dialable("10.0.0.5:3026", ()) == "10.0.0.5:3026"
    assert dialable("0.0.0.0:3026", ("auth1.example.com",)) == "auth1.example.com:3026"
    assert dialable("[::]:3026", ("fd00::5",)) == "[fd00::5]:3026"
    assert dialable("0.0.0.0:3025", ()) == "<auth-host>:3025"


def test_token_text_tells_what_to_fill_in() -> None:
    """The token text tells what to fill in when the auth host is not known."""
    text = render_text(
        "ab" * 16,
        timedelta(minutes=30),
        "sha256:" + "cd" * 32,
        JoinAddresses(("<auth-host>:3025",), ("<auth-host>:3026",)),
    )
    assert text.startswith(
        f"The invite token: {'ab' * 16}\nThis token will expire in 30 minutes.\n\n"
    )
    assert '  auth_servers: ["<auth-host>:3025"]\n' in text
    assert "  - Replace <auth-host> with the auth server's address" in text
    remote_text = render_text(
        "ab" * 16,
        timedelta(minutes=30),
        "sha256:" + "cd" * 32,
        JoinAddresses(("auth:3025",), ("auth:3026",), assumed_join_port=True),
    )
    assert "assumed on port 3026" in remote_text
    assert "<auth-host>" not in remote_text


def test_write_private(tmp_path: Path) -> None:
    """Identity files are written with mode 0600, refused when present, and replaced atomically with
    overwrite."""
    path = tmp_path / "id.pem"
    write_private(path, b"one", overwrite=False)
    assert (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) == (b"one", 0o600)
    with pytest.raises(OperationError, match="exists"):
        write_private(path, b"two", overwrite=False)
    path.chmod(0o644)
    write_private(path, b"two", overwrite=True)
    assert (path.read_bytes(), stat.S_IMODE(path.stat().st_mode)) == (b"two", 0o600)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["id.pem"]
    with pytest.raises(UsageError, match="exists; pass --overwrite"):
        check_destination(path, overwrite=False)
    check_destination(path, overwrite=True)

"""lockctl over mTLS: `auth sign`, `tokens add`, `--auth-server/--identity`, the CA pin.

A real `lockd auth` with TLS on (no `insecure: true`) and, for joining, a real `lockd
agent`; every lockctl command is a subprocess. The locksmith walkthrough of the seed
page runs end to end: an identity without lock rights is refused, the locksmith role is
created and assigned, a newly signed identity can lock, the old one still cannot.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from lockd.client import AuthClient, IdentityFile, ServerUnreachableError
from lockd.pki import spki_pin
from tests.cli.helpers import (
    Agent,
    AuthServer,
    lockctl,
    remote,
    start_agent,
    start_auth_server,
    wait_until,
)

pytestmark = pytest.mark.slow

CREATED = re.compile(r'Created a lock with name "([0-9a-f-]{36})"\.\n')
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
PIN = re.compile(r"sha256:[0-9a-f]{64}")
DENIED_CREATE = 'ERROR: access denied to perform action "create" on "lock"\n'

# The role of the seed page, verbatim.
LOCKSMITH_YAML = """\
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
ACCESS_YAML = "kind: role\nversion: v5\nmetadata:\n  name: access\n"


def ok(result: object) -> None:
    assert getattr(result, "returncode", None) == 0, (
        getattr(result, "stdout", ""),
        getattr(result, "stderr", ""),
    )


def sign(server: AuthServer, user: str, out: Path, *flags: str, roles: str) -> datetime:
    """`lockctl auth sign` on the admin socket; checks the line printed, returns expiry."""
    result = lockctl(server, "auth", "sign", f"--user={user}", f"--out={out}", *flags)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    match = re.fullmatch(
        rf'The identity for user "{re.escape(user)}" \(roles: {re.escape(roles)}\) is in '
        rf"{re.escape(str(out))}; valid until ({RFC3339})\.\n",
        result.stdout,
    )
    assert match, result.stdout
    return datetime.fromisoformat(match.group(1))


def add_user(server: AuthServer, name: str, roles: str = "locksmith") -> None:
    """The roles access (no rights) and locksmith (the seed's), and a user holding `roles`."""
    for document in (ACCESS_YAML, LOCKSMITH_YAML):
        assert lockctl(server, "create", "-f", "-", "--force", stdin=document).returncode == 0
    added = lockctl(server, "users", "add", name, f"--roles={roles}")
    assert added.returncode == 0, added.stderr


def ca_pin_of(server: AuthServer) -> str:
    cert = x509.load_pem_x509_certificate((server.config.parent / "data" / "ca.crt").read_bytes())
    return spki_pin(cert)


def test_locksmith_walkthrough(tls_server: AuthServer, tmp_path: Path) -> None:
    """The seed's troubleshooting section, as lockctl, with roles baked in at sign time."""
    access = tmp_path / "access.yaml"
    access.write_text(ACCESS_YAML)
    assert lockctl(tls_server, "create", "-f", str(access)).stdout == (
        "role 'access' has been created\n"
    )
    added = lockctl(tls_server, "users", "add", "alice", "--roles=access")
    assert (added.returncode, added.stdout) == (0, 'User "alice" has been created\n')

    alice = tmp_path / "alice.pem"
    before = datetime.now(UTC)
    until = sign(tls_server, "alice", alice, roles="access")
    assert abs((until - before).total_seconds() - 12 * 3600) < 60  # the default --ttl=12h
    assert stat.S_IMODE(alice.stat().st_mode) == 0o600
    blocks = re.findall(r"-----BEGIN ([A-Z ]+)-----", alice.read_text())
    assert blocks == ["PRIVATE KEY", "CERTIFICATE", "CERTIFICATE"]

    # Without lock rights: the seed's exact refusal, exit 1, nothing on stdout.
    refused = remote(tls_server, alice, "lock", "--user=foo@example.com")
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", DENIED_CREATE)

    locksmith = tmp_path / "locksmith.yaml"
    locksmith.write_text(LOCKSMITH_YAML)
    created = lockctl(tls_server, "create", "-f", str(locksmith))
    assert (created.returncode, created.stdout, created.stderr) == (
        0,
        "role 'locksmith' has been created\n",
        "",
    )
    updated = lockctl(tls_server, "users", "update", "alice", "--set-roles", "access,locksmith")
    assert updated.stdout == "User alice has been updated:\n\tNew roles: access,locksmith\n"

    # Roles are fixed at sign time: the old identity is still refused ...
    old = tmp_path / "alice-old.pem"
    shutil.copy(alice, old)
    still = remote(tls_server, old, "lock", "--user=foo@example.com")
    assert (still.returncode, still.stderr) == (1, DENIED_CREATE)

    # ... an existing file is not overwritten without --overwrite ...
    exists = lockctl(tls_server, "auth", "sign", "--user=alice", f"--out={alice}")
    assert (exists.returncode, exists.stdout, exists.stderr) == (
        2,
        "",
        f"ERROR: --out: {alice} exists; pass --overwrite to replace it\n",
    )
    assert alice.read_bytes() == old.read_bytes()

    # ... and signing again ("sign out and sign in again") picks up the new role.
    sign(tls_server, "alice", alice, "--overwrite", "--ttl=1h", roles="access,locksmith")
    assert alice.read_bytes() != old.read_bytes()
    assert stat.S_IMODE(alice.stat().st_mode) == 0o600
    locked = remote(
        tls_server, alice, "lock", "--user=foo@example.com", "--message=Suspicious activity."
    )
    assert (locked.returncode, locked.stderr) == (0, "")
    match = CREATED.fullmatch(locked.stdout)
    assert match, locked.stdout
    name = match.group(1)

    listing = remote(tls_server, alice, "get", "locks", "--format=json")
    assert listing.returncode == 0, listing.stderr
    [lock] = json.loads(listing.stdout)
    assert lock["metadata"]["name"] == name
    assert lock["spec"]["target"] == {"user": "foo@example.com"}
    assert lock["spec"]["created_by"] == "alice"
    text = remote(tls_server, alice, "get", "locks", "--format=text")
    assert f'{name}  User:"foo@example.com"  Suspicious activity.  never' in text.stdout

    again = remote(tls_server, old, "get", "locks")
    assert (again.returncode, again.stderr) == (
        1,
        'ERROR: access denied to perform action "list" on "lock"\n',
    )
    removed = remote(tls_server, alice, "rm", f"locks/{name}")
    assert (removed.returncode, removed.stdout) == (0, f'lock "{name}" has been deleted\n')
    # The locksmith role grants locks only: not users, not tokens.
    users = remote(tls_server, alice, "users", "ls")
    assert (users.returncode, users.stderr) == (
        1,
        'ERROR: access denied to perform action "list" on "user"\n',
    )
    token = remote(tls_server, alice, "tokens", "add", "--type=agent")
    assert (token.returncode, token.stderr) == (
        1,
        'ERROR: access denied to perform action "create" on "token"\n',
    )


def test_status_shows_the_ca_pin_locally_and_remotely(
    tls_server: AuthServer, tmp_path: Path
) -> None:
    """status shows the same CA pin over the admin socket and over mTLS with a signed identity."""
    pin = ca_pin_of(tls_server)
    local = lockctl(tls_server, "status")
    assert (local.returncode, local.stderr) == (0, "")
    assert local.stdout.startswith(
        f"Cluster lockctl.test\nVersion 0.1.0\nCA pin  {pin}\n\nStore    sqlite (healthy)\n"
    ), local.stdout

    add_user(tls_server, "bob", "access")
    add_user(tls_server, "carol", "access,locksmith")
    bob, carol = tmp_path / "bob.pem", tmp_path / "carol.pem"
    sign(tls_server, "bob", bob, roles="access")
    sign(tls_server, "carol", carol, roles="access,locksmith")
    # The status names every agent: for admins and users who may list locks.
    refused = remote(tls_server, bob, "status")
    assert (refused.returncode, refused.stderr) == (
        1,
        'ERROR: access denied to perform action "list" on "lock"\n',
    )
    over_tls = remote(tls_server, carol, "status", "--format=json")
    assert over_tls.returncode == 0, over_tls.stderr
    assert json.loads(over_tls.stdout)["ca_pin"] == pin
    # Subcommand flags may come after the command, as -c can.
    after = lockctl(None, "status", f"--auth-server={tls_server.address}", f"--identity={carol}")
    assert (after.returncode, after.stdout.splitlines()[2]) == (0, f"CA pin  {pin}")


def test_tokens_add_and_a_real_agent_joins(tls_server: AuthServer, tmp_path: Path) -> None:
    """tokens add prints a token and the CA pin that let a real `lockd agent` join the cluster."""
    status_pin = re.search(r"^CA pin  (\S+)$", lockctl(tls_server, "status").stdout, re.M)
    assert status_pin
    pin = status_pin.group(1)
    assert pin == ca_pin_of(tls_server)
    result = lockctl(tls_server, "tokens", "add", "--type=agent", "--ttl=1h")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    lines = result.stdout.splitlines()
    token_line = re.fullmatch(r"The invite token: ([0-9a-f]{32})", lines[0])
    assert token_line, lines[0]
    token = token_line.group(1)
    assert lines[1] == "This token will expire in 60 minutes."
    block = result.stdout.split("\n\n")[2]
    assert block == (
        "agent_service:\n"
        "  enabled: true\n"
        f'  auth_servers: ["{tls_server.address}"]\n'
        f'  join_servers: ["{tls_server.join_address}"]\n'
        f'  join_token: "{token}"\n'
        f'  ca_pin: "{pin}"'
    )
    assert "Please note:" in result.stdout
    assert "it can be used once" in result.stdout

    agents: list[Agent] = []
    try:
        node = start_agent(tmp_path / "node-a", block, "node-a")
        agents.append(node)

        def synced() -> bool:
            assert node.process.poll() is None, node.log.read_text()
            status = lockctl(tls_server, "status").stdout
            return re.search(r"^node-a +ipv4:127\.0\.0\.1:\d+ +synced ", status, re.M) is not None

        wait_until(synced, timeout=20, what="the joined agent to be synced")
        assert (node.config.parent / "data" / "agent.crt").exists()

        waited = lockctl(tls_server, "lock", "--user=mallory", "--wait=20s")
        assert waited.returncode == 0, waited.stderr
        assert CREATED.fullmatch(waited.stdout)
        assert waited.stderr.splitlines()[-1].startswith("lock applied by 1/1 agents in ")

        # The token is spent: a second node with the same lines cannot join.
        second = start_agent(tmp_path / "node-b", block, "node-b")
        agents.append(second)
        assert second.process.wait(20) == 1
        assert "ERROR:" in second.log.read_text()
    finally:
        for agent in agents:
            agent.stop()


def test_tokens_add_json(tls_server: AuthServer) -> None:
    """tokens add --format=json prints the token, its type, the CA pin and the auth and join
    addresses."""
    result = lockctl(tls_server, "tokens", "add", "--type=agent", "--ttl=90s", "--format=json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert re.fullmatch(r"[0-9a-f]{32}", document["token"])
    assert document["type"] == "agent"
    assert document["ca_pin"] == ca_pin_of(tls_server)
    assert document["auth_servers"] == [tls_server.address]
    assert document["join_servers"] == [tls_server.join_address]
    expires = datetime.fromisoformat(document["expires"])
    assert 80 < (expires - datetime.now(UTC)).total_seconds() <= 90


@pytest.fixture
def other_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    server = start_auth_server(tmp_path_factory.mktemp("other"), "other.test", tls=True)
    try:
        yield server
    finally:
        server.stop()


def test_identity_from_another_cluster_fails_the_handshake(
    tls_server: AuthServer, other_cluster: AuthServer, tmp_path: Path
) -> None:
    """An identity signed by another cluster's CA is refused at the TLS handshake with a clear
    error."""
    add_user(other_cluster, "eve")
    eve = tmp_path / "eve.pem"
    sign(other_cluster, "eve", eve, roles="locksmith")
    assert remote(other_cluster, eve, "status").returncode == 0  # fine at home

    result = remote(tls_server, eve, "status")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        f"ERROR: cannot reach the auth server at {tls_server.address}: TLS handshake failed: "
        "CERTIFICATE_VERIFY_FAILED: self signed certificate in certificate chain (the "
        f"server's certificate is not from the cluster CA in {eve}: is the identity from "
        "another cluster? compare CA pins with lockctl status)\n"
    ), result.stderr


def test_expired_identity_is_refused(tls_server: AuthServer, tmp_path: Path) -> None:
    """An identity whose certificate has expired is refused, naming the expiry and the fix."""
    add_user(tls_server, "carol")
    carol = tmp_path / "carol.pem"
    until = sign(tls_server, "carol", carol, "--ttl=1s", roles="locksmith")
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.2)

    result = remote(tls_server, carol, "status")
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"ERROR: the identity in {carol} expired at {until:%Y-%m-%dT%H:%M:%SZ}; sign a new "
        f"one on the auth host: lockctl auth sign --user=carol --out={carol}\n",
    )

    # lockctl refuses before dialling; the auth server refuses the certificate too.
    identity = IdentityFile.load(carol)  # a file read: before the event loop runs

    async def ping() -> bool:
        async with AuthClient.connect_with_identity(tls_server.address, identity) as client:
            return await client.ping(5.0)

    with pytest.raises(ServerUnreachableError):
        asyncio.run(ping())


def test_sign_errors(tls_server: AuthServer, tmp_path: Path) -> None:
    """auth sign refuses unknown users and bad flags with a clear error and writes no file."""
    out = tmp_path / "x.pem"
    unknown = lockctl(tls_server, "auth", "sign", "--user=nobody", f"--out={out}")
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        1,
        "",
        'ERROR: user "nobody" not found\n',
    )
    assert not out.exists()
    for ttl, message in (
        (
            "5",
            '--ttl: invalid duration "5": missing unit (use a number with a unit, e.g. 90s, '
            "10h or 1h30m)",
        ),
        ("0s", '--ttl: "0s" must be longer than zero'),
        ("1000h", "certificate TTL must not exceed 720h0m0s"),  # the server's limit
    ):
        result = lockctl(tls_server, "auth", "sign", "--user=x", f"--out={out}", f"--ttl={ttl}")
        assert (result.returncode, result.stderr) == (2, f"ERROR: {message}\n"), ttl
    missing_dir = lockctl(tls_server, "auth", "sign", "--user=x", f"--out={tmp_path}/no/x.pem")
    assert (missing_dir.returncode, missing_dir.stderr) == (
        2,
        f"ERROR: --out: cannot write {tmp_path}/no/x.pem: no directory {tmp_path}/no\n",
    )
    no_out = lockctl(tls_server, "auth", "sign", "--user=x")
    assert no_out.returncode == 2
    assert no_out.stderr.endswith("ERROR: the following arguments are required: --out\n")


def test_tokens_add_errors(tls_server: AuthServer) -> None:
    """tokens add refuses an unknown token type and a zero TTL with exit code 2."""
    node = lockctl(tls_server, "tokens", "add", "--type=node")
    assert (node.returncode, node.stdout, node.stderr) == (
        2,
        "",
        'ERROR: --type: token type "node" not supported (supported: agent)\n',
    )
    zero = lockctl(tls_server, "tokens", "add", "--type=agent", "--ttl=0s")
    assert (zero.returncode, zero.stderr) == (2, 'ERROR: --ttl: "0s" must be longer than zero\n')
    too_long = lockctl(tls_server, "tokens", "add", "--type=agent", "--ttl=200h")
    assert (too_long.returncode, too_long.stderr) == (
        2,
        "ERROR: token TTL must not exceed 168h0m0s\n",
    )
    untyped = lockctl(tls_server, "tokens", "add")
    assert untyped.returncode == 2
    assert untyped.stderr.endswith("ERROR: the following arguments are required: --type\n")


def test_an_insecure_cluster_issues_no_identities(fresh_server: AuthServer, tmp_path: Path) -> None:
    """A cluster without a CA (insecure) refuses to sign identities and says why."""
    out = tmp_path / "x.pem"
    signed = lockctl(fresh_server, "auth", "sign", "--user=x", f"--out={out}")
    assert (signed.returncode, signed.stderr) == (
        1,
        "ERROR: the auth server has no CA (it runs with auth_service.insecure: true), so it "
        "issues no identities\n",
    )
    assert not out.exists()
    token = lockctl(fresh_server, "tokens", "add", "--type=agent")
    assert (token.returncode, token.stderr) == (
        1,
        "ERROR: the auth server has no CA (it runs with auth_service.insecure: true), so "
        "there are no join tokens: agents of such a cluster connect with "
        "agent_service.insecure: true\n",
    )


def test_remote_flag_and_identity_file_errors(tls_server: AuthServer, tmp_path: Path) -> None:
    """Checked locally, before any connection: exit 2 with what is wrong."""
    add_user(tls_server, "dave")
    good = tmp_path / "dave.pem"
    sign(tls_server, "dave", good, roles="locksmith")
    text = good.read_text()
    key, cert, ca = re.findall(r"-----BEGIN [A-Z ]+-----\n.*?-----END [A-Z ]+-----\n", text, re.S)
    layout = (
        "(an identity file holds a PRIVATE KEY, then the user's CERTIFICATE, then the "
        "cluster CA's CERTIFICATE, as `lockctl auth sign` writes it)"
    )
    files = {
        "garbage.pem": ("not pem\n", "not an identity file, no PEM blocks " + layout),
        "nokey.pem": (cert + ca, "no private key " + layout),
        "nocert.pem": (key, "no certificate " + layout),
        "noca.pem": (key + cert, "no CA certificate " + layout),
        "swapped.pem": (key + ca + cert, "the certificate is not for the private key"),
    }
    address = f"--auth-server={tls_server.address}"
    for name, (content, message) in files.items():
        path = tmp_path / name
        path.write_text(content)
        path.chmod(0o600)
        result = lockctl(None, address, f"--identity={path}", "get", "locks")
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"ERROR: --identity: {path}: {message}\n",
        ), name

    cases = [
        (
            [address, f"--identity={tmp_path / 'nope.pem'}", "status"],
            f"--identity: cannot read {tmp_path / 'nope.pem'}: No such file or directory",
        ),
        (
            [address, "status"],
            "--auth-server needs --identity FILE (an identity file: on the auth host, "
            "lockctl auth sign --user=NAME --out=FILE)",
        ),
        (
            [f"--identity={good}", "status"],
            "--identity needs --auth-server HOST:PORT (the auth server's listen_addr)",
        ),
        (
            ["--auth-server=127.0.0.1", f"--identity={good}", "status"],
            '--auth-server: "127.0.0.1" is not HOST:PORT (e.g. auth.example.com:3025, the '
            "auth server's listen_addr)",
        ),
    ]
    for args, message in cases:
        result = lockctl(None, *args)
        assert (result.returncode, result.stdout, result.stderr) == (
            2,
            "",
            f"ERROR: {message}\n",
        ), args

    # The good file works; readable by others, it still works but lockctl warns.
    assert remote(tls_server, good, "status").returncode == 0
    good.chmod(0o644)
    warned = remote(tls_server, good, "status")
    assert warned.returncode == 0
    assert warned.stderr == (
        f"warning: {good} holds a private key but is readable by others (mode 0644); chmod 600 it\n"
    )


def test_join_port_and_closed_port(tls_server: AuthServer, tmp_path: Path) -> None:
    """Dialling the join port or a closed port tells the user which address to use instead."""
    add_user(tls_server, "erin")
    erin = tmp_path / "erin.pem"
    sign(tls_server, "erin", erin, roles="locksmith")
    join = lockctl(None, f"--auth-server={tls_server.join_address}", f"--identity={erin}", "status")
    assert (join.returncode, join.stderr) == (
        1,
        f"ERROR: {tls_server.join_address} does not serve the auth API (is it the join "
        "port, auth_service.join_listen_addr? use auth_service.listen_addr)\n",
    )
    identity = IdentityFile.load(erin)
    assert identity.render() == erin.read_bytes()


def test_tokens_add_remotely(tls_server: AuthServer, tmp_path: Path) -> None:
    """With create on token; the pin is the identity's CA, the join port assumed 3026."""
    joiner = "kind: role\nversion: v5\nmetadata: {name: joiner}\nspec:\n  allow:\n    rules:\n"
    joiner += "    - resources: [token]\n      verbs: [create]\n"
    assert lockctl(tls_server, "create", "-f", "-", stdin=joiner).returncode == 0
    assert lockctl(tls_server, "users", "add", "frank", "--roles=joiner").returncode == 0
    frank = tmp_path / "frank.pem"
    sign(tls_server, "frank", frank, roles="joiner")
    result = remote(tls_server, frank, "tokens", "add", "--type=agent", "--format=json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["ca_pin"] == ca_pin_of(tls_server)
    assert document["auth_servers"] == [tls_server.address]
    assert document["join_servers"] == ["127.0.0.1:3026"]
    text = remote(tls_server, frank, "tokens", "add", "--type=agent", "--ttl=2h")
    assert "This token will expire in 120 minutes.\n" in text.stdout
    assert (
        "127.0.0.1:3026 (the auth server's auth_service.join_listen_addr, assumed on port "
        "3026) must be reachable from the new node." in text.stdout
    )

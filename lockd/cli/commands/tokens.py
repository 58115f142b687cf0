"""`lockctl tokens add --type=agent`: a one-time join token for a new agent (tctl tokens add).

The auth server keeps only the token's SHA-256 and consumes it on first use; the secret
is printed once, with the agent_service lines a new node needs to join: the token, the
cluster's CA pin and where the auth server's API and join ports are.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509

from lockd.cli import connection
from lockd.cli.console import Console
from lockd.cli.exit_codes import EXIT_OK, OperationError, UsageError
from lockd.cli.parser import Runner, Subcommands, add_command
from lockd.cli.tables import expires_text, render_table
from lockd.cli.timeflags import positive_duration
from lockd.client import AuthClient, IdentityFile
from lockd.config import DEFAULT_JOIN_LISTEN_ADDR
from lockd.domain.addresses import join_host_port, split_host_port
from lockd.domain.timeparse import format_duration, format_rfc3339
from lockd.pki import spki_pin

TOKEN_TYPES = ("agent",)
DEFAULT_TTL = "30m"
UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::")
AUTH_HOST_PLACEHOLDER = "<auth-host>"
DEFAULT_JOIN_PORT = split_host_port(DEFAULT_JOIN_LISTEN_ADDR)[1]
INSECURE_CLUSTER = (
    "the auth server has no CA (it runs with auth_service.insecure: true), so there are no "
    "join tokens: agents of such a cluster connect with agent_service.insecure: true"
)

EXAMPLES = """
lockctl tokens add --type=agent --ttl=1h
lockctl tokens add --type=agent --format=json | jq -r .token
"""

ADD_DESCRIPTION = f"""\
Create a one-time token for a new agent to join the cluster, and print it with the
lines to put in the new node's lockd config (agent_service: join_token, ca_pin,
auth_servers, join_servers). On its first start the agent checks the auth server
against the CA pin, exchanges the token on the join port (auth_service.join_listen_addr)
for a certificate bound to its server_id, keeps that certificate in its data_dir and
renews it; the token is then spent. Every new agent needs a token of its own.

--type must be agent (the only kind of token). --ttl (default {DEFAULT_TTL}, at most 168h) is
how long the token can be used. The addresses printed come from the auth server's config
(on the auth host) or from --auth-server (remotely; the join port is then assumed to be
{DEFAULT_JOIN_PORT}); check them against how the new node reaches the auth server.
Creating tokens needs create on token (the admin socket has it). Prints:
  The invite token: <hex>
  This token will expire in <N> minutes.
  ... the agent_service lines and notes (--format=json: one object instead)."""


def register(commands: Subcommands) -> None:
    parser = add_command(
        commands,
        "tokens",
        summary="create, list and revoke join tokens for new agents",
        description="Manage join tokens (see lockctl tokens add|ls|rm --help).",
        examples=EXAMPLES,
    )
    tokens = parser.add_subparsers(dest="tokens_command", metavar="COMMAND", required=True)
    add = add_command(
        tokens,
        "add",
        summary="create a one-time agent join token",
        description=ADD_DESCRIPTION,
        examples=EXAMPLES,
        prepare=prepare_add,
    )
    add.add_argument("--type", required=True, metavar="TYPE", help="the token type: agent")
    add.add_argument(
        "--ttl", default=DEFAULT_TTL, metavar="DURATION", help=f"validity (default {DEFAULT_TTL})"
    )
    add.add_argument(
        "--format", "-o", choices=("text", "json"), default="text", help="default text"
    )
    listing = add_command(
        tokens,
        "ls",
        summary="list the join tokens that can still be used",
        description=LS_DESCRIPTION,
        examples="lockctl tokens ls\nlockctl tokens ls --format=json\n",
        prepare=prepare_ls,
    )
    listing.add_argument(
        "--format", "-o", choices=("text", "json"), default="text", help="default text"
    )
    remove = add_command(
        tokens,
        "rm",
        summary="revoke a join token",
        description=RM_DESCRIPTION,
        examples="lockctl tokens rm 3f2a9c1d\n",
        prepare=prepare_rm,
    )
    remove.add_argument("id", metavar="ID", help="the token's id (or its first 6+ digits)")


LS_DESCRIPTION = """\
List the join tokens that can still be used: the id (the first 16 hex digits of the
token's SHA-256; lockd never keeps the secret), the type, when it expires and who made
it. Needs list and read on token."""

RM_DESCRIPTION = """\
Revoke a join token before it is used or expires, named by its id from `lockctl tokens
ls` (at least 6 digits, as long as they name one token). Prints
`token "<id>" has been deleted`. Needs delete on token."""


def prepare_ls(args: argparse.Namespace) -> Runner:
    fmt: str = args.format

    async def run(client: AuthClient, console: Console) -> int:
        tokens = await client.list_tokens()
        if fmt == "json":
            document = [
                {
                    "id": token.id,
                    "type": token.type,
                    "expires": format_rfc3339(token.expires) if token.expires else None,
                    "created_by": token.created_by,
                }
                for token in tokens
            ]
            console.data(json.dumps(document, indent=2) + "\n")
            return EXIT_OK
        rows = [
            (token.id, token.type, expires_text(token.expires), token.created_by)
            for token in tokens
        ]
        console.data(render_table(("ID", "Type", "Expires", "Created by"), rows))
        return EXIT_OK

    return run


def prepare_rm(args: argparse.Namespace) -> Runner:
    prefix: str = args.id

    async def run(client: AuthClient, console: Console) -> int:
        token = await client.delete_token(prefix)
        console.result(f'token "{token.id}" has been deleted')
        return EXIT_OK

    return run


@dataclass(frozen=True, slots=True)
class JoinAddresses:
    auth_servers: tuple[str, ...]
    join_servers: tuple[str, ...]
    assumed_join_port: bool = False  # remote: the join port is not known, 3026 assumed


def prepare_add(args: argparse.Namespace) -> Runner:
    if args.type not in TOKEN_TYPES:
        raise UsageError(
            f'--type: token type "{args.type}" not supported (supported: {", ".join(TOKEN_TYPES)})'
        )
    ttl = positive_duration("--ttl", args.ttl)
    endpoint = connection.resolve(args)
    addresses = join_addresses(endpoint)
    known_pin = ca_pin_of(endpoint.identity) if isinstance(endpoint, connection.Remote) else ""
    fmt: str = args.format

    async def run(client: AuthClient, console: Console) -> int:
        # Remotely, the pin is the one of the CA the identity file trusts (this server's,
        # or the TLS handshake would have failed): reading the cluster status would need
        # list rights on locks.
        ca_pin = known_pin or (await client.status()).ca_pin
        if not ca_pin:
            raise OperationError(INSECURE_CLUSTER)
        token, expires = await client.create_agent_token(ttl)
        if fmt == "json":
            document = {
                "token": token,
                "type": "agent",
                "expires": format_rfc3339(expires) if expires else None,
                "ca_pin": ca_pin,
                "auth_servers": list(addresses.auth_servers),
                "join_servers": list(addresses.join_servers),
            }
            console.data(json.dumps(document, indent=2) + "\n")
        else:
            console.data(render_text(token, ttl, ca_pin, addresses))
        return EXIT_OK

    return run


def ca_pin_of(identity: IdentityFile) -> str:
    """The pin of the CA that issued the identity's certificate."""
    cert = identity.certificate()
    for pem in identity.ca_certificates():
        ca = x509.load_pem_x509_certificate(pem)
        if ca.subject == cert.issuer:
            return spki_pin(ca)
    return ""


def join_addresses(endpoint: connection.Endpoint) -> JoinAddresses:
    if isinstance(endpoint, connection.Remote):
        host, _ = split_host_port(endpoint.address)
        return JoinAddresses((endpoint.address,), (join_host_port(host, DEFAULT_JOIN_PORT),), True)
    auth = endpoint.config.auth_service
    return JoinAddresses(
        (dialable(auth.listen_addr, auth.tls_names),),
        (dialable(auth.join_listen_addr, auth.tls_names),),
    )


def dialable(address: str, names: tuple[str, ...]) -> str:
    """A listen address as a node would dial it: a wildcard host becomes the first
    tls_names entry, else a placeholder to fill in."""
    host, port = split_host_port(address)
    if host not in UNSPECIFIED_HOSTS:
        return address
    return join_host_port(names[0] if names else AUTH_HOST_PLACEHOLDER, port)


def in_words(ttl: timedelta) -> str:
    """tctl's wording: whole minutes as `60 minutes`; anything else as a Go duration."""
    minutes, rest = divmod(ttl, timedelta(minutes=1))
    if rest or not minutes:
        return format_duration(ttl)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def render_text(token: str, ttl: timedelta, ca_pin: str, addresses: JoinAddresses) -> str:
    words = in_words(ttl)
    join = ", ".join(addresses.join_servers)
    where = (
        f"the auth server's auth_service.join_listen_addr, assumed on port {DEFAULT_JOIN_PORT}"
        if addresses.assumed_join_port
        else "the auth server's auth_service.join_listen_addr"
    )
    placeholder = any(
        AUTH_HOST_PLACEHOLDER in address
        for address in (*addresses.auth_servers, *addresses.join_servers)
    )
    notes = [
        f"This invitation token will expire in {words}; it can be used once, by one agent.",
        f"{join} ({where}) must be reachable from the new node.",
        "The agent keeps its certificate in its data_dir and renews it; the token is not "
        "needed after the first start.",
    ]
    if placeholder:
        notes.append(
            f"Replace {AUTH_HOST_PLACEHOLDER} with the auth server's address (it listens on "
            "all interfaces; auth_service.tls_names lists the names its certificate has)."
        )
    return (
        f"The invite token: {token}\n"
        f"This token will expire in {words}.\n"
        "\n"
        "Add this to the new node's lockd config, then start it with "
        "`lockd agent --config FILE`:\n"
        "\n"
        "agent_service:\n"
        "  enabled: true\n"
        f"  auth_servers: {json.dumps(list(addresses.auth_servers))}\n"
        f"  join_servers: {json.dumps(list(addresses.join_servers))}\n"
        f'  join_token: "{token}"\n'
        f'  ca_pin: "{ca_pin}"\n'
        "\n"
        "Please note:\n"
        "\n" + "".join(f"  - {note}\n" for note in notes)
    )

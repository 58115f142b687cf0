"""`PostgresStore`: the Store port on a PostgreSQL database several auth replicas share.

asyncpg (docs/ha.md says why) with a connection pool for the transactions
(`postgres_ops`), the schema created or upgraded on open (`postgres_schema`), and, for
the replicas, a LISTEN connection of its own that wakes them on commits
(`postgres_listen`), leases and the replica directory (`postgres_replicas`). The store
implements the replica ports of `lockd.domain.replicas` as well as `Store`, whose
methods are `lockd.store.ops_store.OpsStore`'s.

Any failure to reach the database — refused or lost connections, timeouts, a server
shutting down, a database that refuses connections — raises UnavailableError("store
unavailable: ...") and turns `healthy` false; the pool reconnects on the next operation,
and the first one that reaches the database turns it true again.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

import asyncpg

from lockd.domain.errors import LockdError, UnavailableError
from lockd.domain.ports import LOG_RETENTION_AGE, LOG_RETENTION_COUNT
from lockd.domain.replicas import AgentPresence, ReplicaRecord
from lockd.store import postgres_ops, postgres_replicas
from lockd.store.ops_store import OpsStore
from lockd.store.postgres_listen import CONNECTION_ERRORS, CommitListener
from lockd.store.postgres_ops import Conn
from lockd.store.postgres_schema import migrate

T = TypeVar("T")

# libpq's names. No `allow`/`prefer`: a lock service does not fall back to plaintext
# because the server asked it to.
SSL_MODES = ("disable", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """How to reach the database. `password` overrides one in the DSN (read by the
    config from a file or the environment); `root_cert` is the CA bundle that
    `verify-ca`/`verify-full` check the server against. Times in seconds."""

    dsn: str
    password: str | None = field(default=None, repr=False)  # never in logs or tracebacks
    min_pool: int = 2
    max_pool: int = 10
    statement_timeout: float = 5.0
    connect_timeout: float = 5.0
    sslmode: str = "verify-full"
    root_cert: Path | None = None

    def where(self) -> str:
        """host:port/database for messages: never the user or password."""
        parts = urlsplit(self.dsn)
        host = parts.netloc.rpartition("@")[2] or "localhost"
        return f"{host}{parts.path or '/'}"

    def effective_password(self) -> str:
        """The configured password, else the DSN's, else none ("").

        Never None: asyncpg would then read ~/.pgpass on the event loop at every
        connect; lockd takes passwords from its config (file, env) or the DSN only.
        """
        if self.password is not None:
            return self.password
        return unquote(urlsplit(self.dsn).password or "")


def tls_context(options: PostgresOptions) -> ssl.SSLContext | bool:
    """What asyncpg's `ssl` argument gets for the configured sslmode (False: plaintext).

    Reads the CA files, so it runs once per open, off the event loop; every connection
    then shares the context. `require` encrypts without checking the certificate;
    `verify-ca` checks it against `root_cert` (else the system's CAs); `verify-full`
    checks the host name too.
    """
    if options.sslmode == "disable":
        return False
    cafile = None if options.root_cert is None else str(options.root_cert)
    context = ssl.create_default_context(cafile=cafile)
    if options.sslmode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif options.sslmode == "verify-ca":
        context.check_hostname = False
    return context


async def _keep_session(_conn: object) -> None:
    """The pool's reset on release: nothing beyond the rollback asyncpg always does.

    lockd's transactions leave no session state behind (no SET, no LISTEN, no session
    advisory lock: the listener has its own connection), so the default reset (RESET
    ALL, UNLISTEN *, ...) would only add a round trip to every operation.
    """


class PostgresStore(OpsStore):
    """The Store port (and the replica ports) on one PostgreSQL database."""

    OPS: ClassVar[ModuleType] = postgres_ops

    def __init__(
        self,
        options: PostgresOptions,
        *,
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
        listener_retry: float = 1.0,
    ) -> None:
        super().__init__(retention_age, retention_count)
        self._options = options
        self._pool: asyncpg.Pool | None = None
        self._tls: ssl.SSLContext | bool = False  # made by open()
        # Backend pids of the pool's connections: their announcements are our own commits.
        self._own_backends: set[int] = set()
        self._listener = CommitListener(
            self._connect, retry=listener_retry, own_backend=self._own_backends.__contains__
        )

    @property
    def type(self) -> str:
        return "postgres"

    @property
    def options(self) -> PostgresOptions:
        return self._options

    def _connect_args(self) -> dict[str, Any]:
        options = self._options
        return {
            "dsn": options.dsn,
            "password": options.effective_password(),
            "ssl": self._tls,
            "timeout": options.connect_timeout,
            "command_timeout": options.statement_timeout,
            "server_settings": {
                "application_name": "lockd",
                # The server gives up too, so a stuck statement frees its locks.
                "statement_timeout": str(int(options.statement_timeout * 1000)),
                "idle_in_transaction_session_timeout": str(int(options.statement_timeout * 2000)),
            },
        }

    async def _adopt(self, conn: asyncpg.Connection) -> None:
        """A new pooled connection: remember its backend while it lives."""
        pid = conn.get_server_pid()
        self._own_backends.add(pid)
        conn.add_termination_listener(lambda _conn: self._own_backends.discard(pid))

    async def _connect(self) -> asyncpg.Connection:
        """A connection of its own (not the pool's), for the listener."""
        return await asyncpg.connect(**self._connect_args())

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            self._tls = await asyncio.to_thread(tls_context, self._options)
        except (OSError, ssl.SSLError) as error:
            raise self._unavailable(error, "cannot read the TLS settings for ") from error
        try:
            pool = await asyncpg.create_pool(
                min_size=self._options.min_pool,
                max_size=self._options.max_pool,
                reset=_keep_session,
                init=self._adopt,
                **self._connect_args(),
            )
        except CONNECTION_ERRORS as error:
            self._healthy = False
            raise self._unavailable(error, "cannot connect to ") from error
        try:
            async with pool.acquire(timeout=self._options.connect_timeout) as conn:
                await migrate(conn)
        except CONNECTION_ERRORS as error:
            await pool.close()
            self._healthy = False
            raise self._unavailable(error, "cannot prepare ") from error
        except BaseException:
            await pool.close()
            self._healthy = False
            raise
        self._pool = pool
        self._listener.start()
        # A replica that serves before it hears commits would learn of other replicas'
        # writes only at its next poll; if the listener cannot connect now it keeps trying.
        await self._listener.until_listening(self._options.connect_timeout)
        self._healthy = True

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        self._healthy = False
        await self._listener.stop()
        if pool is not None:
            # Waits for operations in flight (bounded by the statement timeout).
            await pool.close()

    def _unavailable(self, error: BaseException, doing: str = "") -> UnavailableError:
        detail = str(error) or type(error).__name__
        return UnavailableError(
            f"store unavailable: {doing}PostgreSQL at {self._options.where()}: {detail}"
        )

    async def _call(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        """Run `operation` on a pooled connection and keep `healthy` up to date."""
        pool = self._pool
        if pool is None:
            raise UnavailableError("store unavailable: store is not open")
        try:
            async with pool.acquire(timeout=self._options.connect_timeout) as conn:
                try:
                    result = await operation(conn)
                except asyncpg.InternalClientError:
                    conn.terminate()  # its protocol state is lost; the pool replaces it
                    raise
        except CONNECTION_ERRORS as error:
            self._healthy = False
            raise self._unavailable(error) from error
        except LockdError:
            # The database answered; only the request was refused (not found, exists...).
            self._healthy = True
            raise
        self._healthy = True
        return result

    async def _run(self, operation: Callable[..., Any], *args: Any) -> Any:
        return await self._call(lambda conn: operation(conn, *args))

    # SharedLog (lockd.domain.replicas)

    async def wait_for_commit(self, after_revision: int, at_most: float) -> None:
        await self._listener.wait_for_commit(after_revision, at_most)

    @property
    def listening(self) -> bool:
        """Whether the commit listener holds a LISTENing connection right now."""
        return self._listener.listening

    async def head(self) -> tuple[str, int]:
        return await self._call(postgres_ops.head)

    async def start_new_epoch(self, expected_epoch: str) -> str:
        new = uuid.uuid4().hex
        return await self._call(
            lambda conn: postgres_ops.start_new_epoch(conn, expected_epoch, new)
        )

    # Leases

    async def acquire_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        return await self._call(
            lambda conn: postgres_replicas.acquire_lease(conn, name, holder, ttl)
        )

    async def release_lease(self, name: str, holder: str) -> None:
        await self._call(lambda conn: postgres_replicas.release_lease(conn, name, holder))

    # ReplicaDirectory

    async def report_replica(
        self, replica: ReplicaRecord, agents: Sequence[AgentPresence], complete: bool = True
    ) -> None:
        await self._call(
            lambda conn: postgres_replicas.report_replica(conn, replica, agents, complete)
        )

    async def list_replicas(
        self, exclude: str = "", known: Mapping[str, datetime] | None = None
    ) -> tuple[list[ReplicaRecord], dict[str, list[AgentPresence]]]:
        return await self._call(
            lambda conn: postgres_replicas.list_replicas(conn, exclude, known or {})
        )

    async def forget_replica(self, replica_id: str) -> None:
        await self._call(lambda conn: postgres_replicas.forget_replica(conn, replica_id))

    # AckRelay (lockd.auth.replica_set)

    async def request_acks(self, epoch: str, revision: int) -> None:
        await self._call(lambda conn: postgres_replicas.request_acks(conn, epoch, revision))

    def on_ack_request(self, handler: Callable[[str, int], None]) -> None:
        self._listener.on_ack_request.append(handler)

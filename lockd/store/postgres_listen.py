"""`CommitListener`: LISTEN for the revisions other replicas commit, on its own connection.

Each write transaction announces its new revision with NOTIFY (`postgres_ops`). The
listener only wakes whoever waits in `wait_for_commit`; the event table stays the truth
(NOTIFY is not durable: a notification sent while the listener was disconnected is
lost). So whenever the listener (re)connects it wakes the waiter too, which then reads
the log from its last revision and misses nothing.

The listening connection is not from the pool: a pool resets its connections (UNLISTEN
*) when they are returned, and the listener must hold its connection for as long as it
runs. A half-open connection (a database host that vanished) is noticed by a periodic
ping with a timeout, not left to TCP.

Announcements sent by the store's own pooled connections (`own_backend`: this replica's
commits) are not wake-ups: those reach the replica's hub through the local fast path as
the write returns, and waking the tail for them would cost two queries per write. A
write whose reply was lost is caught by the next poll.

The same connection also LISTENs for ack requests of other replicas
(`postgres_replicas.ACK_REQUEST_CHANNEL`) and hands each to `on_ack_request`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from lockd.store.postgres_ops import NOTIFY_CHANNEL
from lockd.store.postgres_replicas import ACK_REQUEST_CHANNEL, parse_ack_request

_log = structlog.get_logger("lockd.store.postgres")

# What the driver raises when the database cannot be reached or the connection broke.
# InternalClientError: the protocol met a state it did not expect, e.g. a statement sent
# just as the server's "terminating connection" arrived; that connection is unusable.
CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

Connect = Callable[[], Awaitable[asyncpg.Connection]]
AckRequestHandler = Callable[[str, int], None]


class CommitListener:
    """Wakes `wait_for_commit` when a commit is announced or the listener reconnected.

    `connect` opens a new connection to the store's database; `retry` is the pause
    between connection attempts; `ping_interval` how often an idle connection is proven
    alive. One consumer (the replica's log tailer) waits at a time.
    """

    def __init__(
        self,
        connect: Connect,
        *,
        retry: float = 1.0,
        ping_interval: float = 5.0,
        own_backend: Callable[[int], bool] = lambda _pid: False,
    ):
        self._connect = connect
        self._own_backend = own_backend
        self._retry = retry
        self._ping_interval = ping_interval
        self._announced = 0  # the highest revision announced since the last (re)connect
        self._connections = 0  # how many times the listener has (re)connected
        self._seen_connections = 0  # `_connections` as the waiter last saw it
        self._changed = asyncio.Event()
        self._connected = False
        self._first_listen = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Called with (epoch, revision) for every ack request announced by any replica.
        self.on_ack_request: list[AckRequestHandler] = []

    @property
    def listening(self) -> bool:
        """Whether a connection is LISTENing right now."""
        return self._connected

    async def until_listening(self, at_most: float) -> bool:
        """Wait (at most `at_most` seconds) until the first connection LISTENs; whether
        it does."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._first_listen.wait()
        return self._first_listen.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="lockd-postgres-listener"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_for_commit(self, after_revision: int, at_most: float) -> None:
        """Return when a revision after `after_revision` was announced, when the listener
        (re)connected since the previous call, or after `at_most` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                while self._announced <= after_revision:
                    if self._connections != self._seen_connections:
                        break
                    await self._changed.wait()
        self._seen_connections = self._connections

    def _wake(self) -> None:
        # A new Event for the next wait: every waiter on the old one is released.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _on_notify(self, _conn: object, pid: int, _channel: str, payload: object) -> None:
        if self._own_backend(pid):
            return
        try:
            revision = int(str(payload))
        except ValueError:
            _log.warning("ignored a malformed commit announcement", payload=str(payload)[:40])
            return
        if revision > self._announced:
            self._announced = revision
            self._wake()

    def _on_ack_request(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            epoch, revision = parse_ack_request(str(payload))
        except ValueError as error:
            _log.warning("ignored a malformed ack request", error=str(error))
            return
        for handler in self.on_ack_request:
            handler(epoch, revision)

    async def _run(self) -> None:
        failing = False
        while True:
            try:
                conn = await self._connect()
            except CONNECTION_ERRORS as error:
                if not failing:
                    _log.warning("commit listener cannot connect; retrying", error=str(error))
                failing = True
                await asyncio.sleep(self._retry)
                continue
            try:
                await self._listen(conn)
                _log.warning("commit listener lost its connection; reconnecting")
            except CONNECTION_ERRORS as error:
                _log.warning("commit listener lost its connection; reconnecting", error=str(error))
            finally:
                self._connected = False
                conn.terminate()  # no goodbye to a connection that may hang
            failing = False
            await asyncio.sleep(self._retry)

    async def _listen(self, conn: asyncpg.Connection) -> None:
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_lost(_conn: object) -> None:
            if not lost.done():
                lost.set_result(None)

        conn.add_termination_listener(on_lost)
        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        await conn.add_listener(ACK_REQUEST_CHANNEL, self._on_ack_request)
        # Connected: anything may have been committed while we were not listening.
        self._announced = 0
        self._connected = True
        self._connections += 1
        self._first_listen.set()
        _log.info("commit listener is listening", connections=self._connections)
        self._wake()
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(lost), self._ping_interval)
                return  # the connection ended
            except TimeoutError:
                # Quiet for a while: prove the connection still reaches the database.
                await conn.fetchval("SELECT 1", timeout=self._ping_interval)

"""`SqliteStore`: the embedded default store — stdlib sqlite3 on one dedicated thread.

sqlite3 blocks, so every use of the connection happens on a single worker thread
(a one-thread executor) and the event loop only awaits it; one thread also means one
connection and writes that never contend with each other. The database runs in WAL
mode with `synchronous=FULL`: an acknowledged lock survives a power cut (DESIGN §5).
The transactions themselves are in `lockd.store.sqlite_ops`; the Store methods that run
them are `lockd.store.ops_store.OpsStore`'s.

Any sqlite3.Error becomes UnavailableError("store unavailable: ...") and turns
`healthy` false; the next operation that reaches the database turns it true again.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from lockd.domain.errors import LockdError, UnavailableError
from lockd.domain.ports import LOG_RETENTION_AGE, LOG_RETENTION_COUNT
from lockd.store import sqlite_ops
from lockd.store.ops_store import OpsStore

DEFAULT_BUSY_TIMEOUT = 5.0  # seconds to wait for another connection's write lock


class SqliteStore(OpsStore):
    """The Store port on one SQLite file.

    `connection_factory` is a sqlite3.Connection subclass for the connection (tests use
    one to inject IO faults); `busy_timeout` bounds the wait for a lock held by another
    process, after which the operation fails as unavailable.
    """

    OPS: ClassVar[ModuleType] = sqlite_ops

    def __init__(
        self,
        path: Path,
        *,
        retention_age: timedelta = LOG_RETENTION_AGE,
        retention_count: int = LOG_RETENTION_COUNT,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        connection_factory: type[sqlite3.Connection] = sqlite3.Connection,
    ) -> None:
        super().__init__(retention_age, retention_count)
        self._path = path
        self._busy_timeout = busy_timeout
        self._factory = connection_factory
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    @property
    def type(self) -> str:
        return "sqlite"

    @property
    def path(self) -> Path:
        return self._path

    async def open(self) -> None:
        if self._conn is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lockd-sqlite")
        loop = asyncio.get_running_loop()
        connect = functools.partial(
            sqlite_ops.connect, self._path, self._busy_timeout, self._factory
        )
        try:
            conn = await loop.run_in_executor(executor, connect)
        except (sqlite3.Error, OSError) as error:
            executor.shutdown(wait=False)
            self._healthy = False
            raise UnavailableError(
                f"store unavailable: cannot open {self._path}: {error}"
            ) from error
        except BaseException:
            executor.shutdown(wait=False)
            self._healthy = False
            raise
        self._executor, self._conn = executor, conn
        self._healthy = True

    async def close(self) -> None:
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            return
        # Refuse new work first; work already queued on the thread runs before the close.
        self._executor, self._conn = None, None
        self._healthy = False
        try:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
        except sqlite3.Error:
            pass  # nothing left to protect: the last transaction committed or rolled back
        finally:
            executor.shutdown(wait=False)  # the thread is idle now; don't block the loop

    async def head(self) -> tuple[str, int]:
        return await self._run(sqlite_ops.head)  # type: ignore[no-any-return]

    async def _run(self, operation: Callable[..., Any], *args: Any) -> Any:
        """Run `operation(conn, *args)` on the worker thread and keep `healthy` up to date."""
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise UnavailableError("store unavailable: store is not open")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(executor, functools.partial(operation, conn, *args))
        except sqlite3.Error as error:
            self._healthy = False
            raise UnavailableError(f"store unavailable: {error}") from error
        except LockdError:
            # The database answered; only the request was refused (not found, exists...).
            self._healthy = True
            raise
        self._healthy = True
        return result

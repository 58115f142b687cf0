"""Adapters of the `Store` port (`lockd.domain.ports`): memory, SQLite and PostgreSQL.

Every adapter passes the one contract suite in `tests/contract`. `build_store` picks an
adapter by the config's store type; the daemon opens and closes it.
"""

from __future__ import annotations

from pathlib import Path

from lockd.domain.errors import ValidationError
from lockd.domain.ports import Store
from lockd.store.memory import MemoryStore
from lockd.store.postgres import PostgresOptions, PostgresStore
from lockd.store.sqlite import SqliteStore

__all__ = [
    "SQLITE_FILE_NAME",
    "STORE_TYPES",
    "MemoryStore",
    "PostgresOptions",
    "PostgresStore",
    "SqliteStore",
    "build_store",
]

STORE_TYPES = ("sqlite", "memory", "postgres")
SQLITE_FILE_NAME = "lockd.db"


def build_store(
    store_type: str, sqlite_path: Path, postgres: PostgresOptions | None = None
) -> Store:
    """An unopened store of `store_type`; SQLite keeps its database at `sqlite_path`,
    PostgreSQL is reached with `postgres` (required for that type).

    Creates the SQLite database's directory (mode 0700) when it is missing.
    """
    if store_type == "memory":
        return MemoryStore()
    if store_type == "sqlite":
        sqlite_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SqliteStore(sqlite_path)
    if store_type == "postgres":
        if postgres is None:
            raise ValidationError("store type postgres needs its connection settings")
        return PostgresStore(postgres)
    supported = ", ".join(STORE_TYPES)
    raise ValidationError(f'store type "{store_type}" not supported (supported: {supported})')

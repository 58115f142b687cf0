"""Adapters of the `Store` port (`lockd.domain.ports`): memory and SQLite (PostgreSQL later).

Every adapter passes the one contract suite in `tests/contract`. `build_store` picks an
adapter by the config's store type; the daemon opens and closes it.
"""

from __future__ import annotations

from pathlib import Path

from lockd.domain.errors import ValidationError
from lockd.domain.ports import Store
from lockd.store.memory import MemoryStore
from lockd.store.sqlite import SqliteStore

__all__ = [
    "SQLITE_FILE_NAME",
    "STORE_TYPES",
    "MemoryStore",
    "SqliteStore",
    "build_store",
    "open_store",
]

STORE_TYPES = ("memory", "sqlite")
SQLITE_FILE_NAME = "lockd.db"


def build_store(store_type: str, data_dir: Path) -> Store:
    """An unopened store of `store_type`; SQLite keeps `<data_dir>/lockd.db`.

    Creates `data_dir` (mode 0700) when the store needs it and it is missing.
    """
    if store_type == "memory":
        return MemoryStore()
    if store_type == "sqlite":
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SqliteStore(data_dir / SQLITE_FILE_NAME)
    supported = ", ".join(STORE_TYPES)
    raise ValidationError(f'store type "{store_type}" not supported (supported: {supported})')


async def open_store(store_type: str, data_dir: Path) -> Store:
    """`build_store`, then `open`: raises UnavailableError when the store cannot open."""
    store = build_store(store_type, data_dir)
    await store.open()
    return store

"""`auth_service.storage` with type postgres: every key read, every mistake a clear error."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from lockd.config import Config, parse_config
from lockd.domain.errors import ValidationError
from lockd.store import PostgresOptions, PostgresStore, build_store

DSN = "postgresql://lockd@db.example:5432/lockd"


def parse(storage: Mapping[str, object], tmp_path: Path) -> Config:
    return parse_config(
        {"data_dir": str(tmp_path), "auth_service": {"enabled": True, "storage": storage}},
        env={},
    )


def postgres_of(config: Config) -> PostgresOptions:
    options = config.auth_service.storage.postgres
    assert options is not None
    return options


def test_a_minimal_postgres_storage_takes_the_defaults(tmp_path: Path) -> None:
    """Only a DSN: pool 2..10, 5 s timeouts, verify-full TLS, no password of its own."""
    options = postgres_of(parse({"type": "postgres", "dsn": DSN}, tmp_path))
    assert options == PostgresOptions(dsn=DSN)
    assert (options.min_pool, options.max_pool, options.sslmode) == (2, 10, "verify-full")
    assert (options.statement_timeout, options.connect_timeout) == (5.0, 5.0)


def test_every_postgres_key_is_read(tmp_path: Path) -> None:
    """Pool sizes, timeouts, sslmode, a root cert in the data dir and a password file."""
    (tmp_path / "ca.pem").write_text("not parsed at config time\n")
    (tmp_path / "pg-password").write_text("s3cret\n")
    storage = {
        "type": "postgres",
        "dsn": DSN,
        "pool_min_size": 1,
        "pool_max_size": 20,
        "statement_timeout": "2s",
        "connect_timeout": "1500ms",
        "sslmode": "verify-ca",
        "root_cert": "ca.pem",
        "password_file": "pg-password",
    }
    options = postgres_of(parse(storage, tmp_path))
    assert options == PostgresOptions(
        dsn=DSN,
        password="s3cret",
        min_pool=1,
        max_pool=20,
        statement_timeout=2.0,
        connect_timeout=1.5,
        sslmode="verify-ca",
        root_cert=tmp_path / "ca.pem",
    )
    assert "s3cret" not in repr(options)


def test_a_dsn_may_list_several_hosts_for_failover(tmp_path: Path) -> None:
    """Comma-separated hosts (IPv6 in brackets) with target_session_attrs pass the check."""
    dsn = "postgresql://lockd@db1:5432,[::1]:5433,db3/lockd?target_session_attrs=read-write"
    assert postgres_of(parse({"type": "postgres", "dsn": dsn}, tmp_path)).dsn == dsn


def test_the_password_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """password_env names a variable that holds the password."""
    monkeypatch.setenv("LOCKD_PG_PASSWORD", "from-env")
    storage = {"type": "postgres", "dsn": DSN, "password_env": "LOCKD_PG_PASSWORD"}
    assert postgres_of(parse(storage, tmp_path)).password == "from-env"


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"type": "postgres"}, "auth_service.storage.dsn: required for storage type postgres"),
        (
            {"type": "postgres", "dsn": "host=db dbname=lockd"},
            "auth_service.storage.dsn: must be a URL: postgresql://",
        ),
        (
            {"type": "postgres", "dsn": "mysql://db/lockd"},
            "auth_service.storage.dsn: must be a URL",
        ),
        ({"type": "postgres", "dsn": "postgresql://db"}, "dsn: names no database"),
        ({"type": "postgres", "dsn": "postgresql:///lockd"}, "dsn: names no host"),
        ({"type": "postgres", "dsn": "postgresql://db:99999/x"}, "dsn: not a valid PostgreSQL URL"),
        (
            {"type": "postgres", "dsn": "postgresql://db1:5432,db2:x/lockd"},
            "port 'x' of 'db2:x' is not a number from 1 to 65535",
        ),
        (
            {"type": "postgres", "dsn": DSN + "?sslmode=disable"},
            'dsn: set "sslmode" with storage key sslmode, not in the DSN',
        ),
        (
            {"type": "sqlite", "dsn": DSN},
            "auth_service.storage.dsn: only for storage type postgres",
        ),
        (
            {"type": "postgres", "dsn": DSN, "sslmode": "prefer"},
            'auth_service.storage.sslmode: sslmode "prefer" not supported (supported: disable,',
        ),
        (
            {"type": "postgres", "dsn": DSN, "pool_min_size": 5, "pool_max_size": 2},
            "pool_min_size: 5 is larger than pool_max_size (2)",
        ),
        (
            {"type": "postgres", "dsn": DSN, "pool_max_size": 0},
            "pool_max_size: 0 is out of range (1 to 1000)",
        ),
        (
            {"type": "postgres", "dsn": DSN, "pool_max_size": "10"},
            'pool_max_size: must be a whole number, got string "10"',
        ),
        (
            {"type": "postgres", "dsn": DSN, "statement_timeout": "5"},
            'statement_timeout: invalid duration "5"',
        ),
        (
            {"type": "postgres", "dsn": DSN, "sslmode": "require", "root_cert": "ca.pem"},
            "root_cert: is only used with sslmode verify-ca or verify-full (sslmode is require)",
        ),
        (
            {"type": "postgres", "dsn": DSN, "root_cert": "missing.pem"},
            "root_cert: no such file: ",
        ),
        (
            {"type": "postgres", "dsn": DSN, "password_file": "missing"},
            "password_file: cannot read ",
        ),
        (
            {"type": "postgres", "dsn": DSN, "password_env": "LOCKD_TEST_UNSET_VARIABLE"},
            'password_env: environment variable "LOCKD_TEST_UNSET_VARIABLE" is not set or empty',
        ),
        (
            {"type": "postgres", "dsn": "postgresql://u:pw@db/x", "password_env": "X"},
            "password_env: give the password once (also a password in the dsn)",
        ),
        (
            {"type": "postgres", "dsn": DSN, "pool": 3},
            "storage.pool: unknown key (known keys: type, path, dsn,",
        ),
    ],
)
def test_bad_postgres_storage_is_a_clear_error(
    tmp_path: Path, storage: dict[str, object], message: str
) -> None:
    """Each mistake names its key and says what is wrong; nothing reaches the driver."""
    with pytest.raises(ValidationError) as raised:
        parse(storage, tmp_path)
    assert message in str(raised.value)


def test_build_store_makes_a_postgres_store_from_its_settings(tmp_path: Path) -> None:
    """build_store("postgres") needs the connection settings and uses them unopened."""
    options = PostgresOptions(dsn=DSN)
    store = build_store("postgres", tmp_path / "unused.db", options)
    assert isinstance(store, PostgresStore)
    assert store.options is options
    assert not store.healthy
    with pytest.raises(ValidationError, match="needs its connection settings"):
        build_store("postgres", tmp_path / "unused.db")

"""The settings of issue 17's server side: `auth_service.watch_workers` and
`auth_service.snapshot_bytes_in_flight`, as the config parser reads and refuses them, and
as the daemon's settings carry them to the auth server."""

from __future__ import annotations

import os

import pytest

from lockd.config import parse_config
from lockd.domain.errors import ValidationError
from lockd.runtime.builders import auth_server_settings


def auth(**section: object) -> dict[str, object]:
    return {"auth_service": {"enabled": True, **section}}


def test_watch_workers_default_to_one_and_auto_means_one_per_core() -> None:
    """Unset: 1 (one process, as before); `auto`: the machine's cores; a number as given;
    the daemon's auth server settings carry it, with the snapshot byte budget (a size
    with a unit, or plain bytes)."""
    assert parse_config(auth(), env={}).auth_service.watch_workers == 1
    cores = os.cpu_count() or 1
    assert parse_config(auth(watch_workers="auto"), env={}).auth_service.watch_workers == cores
    config = parse_config(auth(watch_workers=3, snapshot_bytes_in_flight="64MiB"), env={})
    settings = auth_server_settings(config)
    assert (settings.watch_workers, settings.watch.snapshot_bytes_in_flight) == (3, 64 << 20)
    in_bytes = parse_config(auth(snapshot_bytes_in_flight=2 << 20), env={}).auth_service
    assert in_bytes.snapshot_bytes_in_flight == 2 << 20


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"watch_workers": 0}, 'must be "auto" or a whole number from 1 to 64, got number 0'),
        ({"watch_workers": "many"}, 'must be "auto" or a whole number'),
        (
            {"watch_workers": 2, "storage": {"type": "memory"}},
            "more than one needs the sqlite store (storage.type is memory)",
        ),
        ({"snapshot_bytes_in_flight": "512KiB"}, "must be at least 1MiB"),
        ({"snapshot_bytes_in_flight": "lots"}, "must be a size such as 64MiB"),
    ],
)
def test_bad_worker_and_budget_settings_are_refused_with_the_key(
    section: dict[str, object], message: str
) -> None:
    """Each refusal names the key and says what is accepted."""
    with pytest.raises(ValidationError) as refused:
        parse_config(auth(**section), env={})
    assert "auth_service." in str(refused.value)
    assert message in str(refused.value)


def test_auto_on_a_store_other_than_sqlite_is_one_process() -> None:
    """`auto` never asks for workers a store cannot have: one process on memory."""
    config = parse_config(auth(watch_workers="auto", storage={"type": "memory"}), env={})
    assert config.auth_service.watch_workers == 1

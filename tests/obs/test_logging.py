"""lockd.obs.logging: JSON lines, console output, contextvars and stdlib routing."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest
import structlog

from lockd.domain.errors import ValidationError
from lockd.obs.logging import configure_logging, get_logger

pytestmark = pytest.mark.usefixtures("restore_logging")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_event_level_timestamp_and_fields() -> None:
    """In json format every record is one JSON object with event, level, UTC timestamp."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)

    get_logger("lockd.test").info("lock created", name="l1", revision=7)

    [record] = lines(stream)
    assert record["event"] == "lock created"
    assert record["level"] == "info"
    assert record["logger"] == "lockd.test"
    assert record["name"] == "l1"
    assert record["revision"] == 7
    timestamp = str(record["timestamp"])
    assert timestamp.endswith("Z")
    assert datetime.fromisoformat(timestamp).utcoffset() is not None
    assert list(record)[:4] == ["timestamp", "level", "logger", "event"]


def test_contextvars_are_merged_into_every_line() -> None:
    """Values bound with structlog.contextvars (per RPC) appear on each record."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)

    structlog.contextvars.bind_contextvars(rpc="/lockd.v1.LockService/CreateLock", peer="alice")
    get_logger("lockd.test").info("handled")
    logging.getLogger("grpc").warning("from stdlib")

    records = lines(stream)
    assert [r["rpc"] for r in records] == ["/lockd.v1.LockService/CreateLock"] * 2
    assert all(r["peer"] == "alice" for r in records)


def test_stdlib_logging_goes_through_the_same_renderer() -> None:
    """A grpc/asyncio stdlib record becomes a JSON line with its logger name and args applied."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)

    logging.getLogger("asyncio").warning("task %s was destroyed", "t1", extra={"loop": "main"})

    [record] = lines(stream)
    assert record["event"] == "task t1 was destroyed"
    assert record["level"] == "warning"
    assert record["logger"] == "asyncio"
    assert record["loop"] == "main"
    assert str(record["timestamp"]).endswith("Z")


def test_level_filters_both_structlog_and_stdlib() -> None:
    """Records below the configured level are dropped on both paths."""
    stream = io.StringIO()
    configure_logging("json", "warning", stream)

    get_logger("lockd.test").info("quiet")
    logging.getLogger("grpc").info("quiet too")
    get_logger("lockd.test").error("loud")

    assert [r["event"] for r in lines(stream)] == ["loud"]


def test_exceptions_are_rendered_into_the_json_line() -> None:
    """logger.exception puts the traceback in an `exception` field, still one line."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("lockd.test").exception("failed")

    [record] = lines(stream)
    assert record["level"] == "error"
    assert "RuntimeError: boom" in str(record["exception"])


def test_configuring_again_replaces_the_previous_handler() -> None:
    """A second call sends output to the new stream only, with no duplicate lines."""
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", first)
    configure_logging("json", "debug", second)

    get_logger("lockd.test").debug("once")

    assert first.getvalue() == ""
    assert [r["event"] for r in lines(second)] == ["once"]


def test_auto_is_json_off_a_tty_and_console_on_one() -> None:
    """auto picks JSON for pipes and files, the console renderer for a terminal."""
    piped = io.StringIO()
    configure_logging("auto", "info", piped)
    get_logger("lockd.test").info("piped")
    assert json.loads(piped.getvalue())["event"] == "piped"

    terminal = _Tty()
    configure_logging("auto", "info", terminal)
    get_logger("lockd.test").info("on a tty", key="v")
    output = terminal.getvalue()
    assert "on a tty" in output
    assert not output.startswith("{")


def test_console_format_is_readable_text() -> None:
    """console renders a human line with the level, event and key=value pairs."""
    stream = io.StringIO()
    configure_logging("console", "info", stream)

    get_logger("lockd.test").info("agent synced", revision=12)

    output = stream.getvalue()
    assert "agent synced" in output
    assert "info" in output
    assert "revision=12" in output
    assert "\x1b[" not in output  # no colour codes off a terminal


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "verbose")])
def test_unknown_format_or_level_is_refused(fmt: str, level: str) -> None:
    """Bad values raise ValidationError instead of logging nowhere."""
    with pytest.raises(ValidationError, match="not supported"):
        configure_logging(fmt, level, io.StringIO())

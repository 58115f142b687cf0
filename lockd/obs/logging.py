"""structlog setup: one renderer for lockd's own logs and for stdlib logging (grpc, asyncio).

* `json`: one JSON object per line (production, log shippers).
* `console`: aligned, human-readable lines (colours only on a TTY).
* `auto`: `console` when the stream is a TTY, else `json`.

Every line carries `timestamp` (ISO 8601, UTC, `Z`), `level`, `logger` and `event`, plus
whatever was bound with `structlog.contextvars.bind_contextvars` (e.g. the RPC method and
peer, bound per call by the API layer). Records from the stdlib `logging` module take the
same path (`structlog.stdlib.ProcessorFormatter` on one root handler), so grpc's and
asyncio's messages look like lockd's own.

`configure_logging` may be called again (tests do): it replaces the handler it installed
before and leaves other handlers (e.g. pytest's capture) alone.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from lockd.domain.errors import ValidationError

LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")


class _LockdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler installed by `configure_logging` (recognised on a second call)."""


def _shared_processors() -> list[Processor]:
    """What both structlog and foreign (stdlib) records go through before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(format: str, level: str, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (default: the current sys.stderr)."""
    if format not in LOG_FORMATS:
        supported = ", ".join(LOG_FORMATS)
        raise ValidationError(f'log format "{format}" not supported (supported: {supported})')
    if level not in LOG_LEVELS:
        supported = ", ".join(LOG_LEVELS)
        raise ValidationError(f'log level "{level}" not supported (supported: {supported})')
    target = sys.stderr if stream is None else stream
    is_tty = _isatty(target)
    use_console = format == "console" or (format == "auto" and is_tty)

    final: list[Processor]
    if use_console:
        final = [structlog.dev.ConsoleRenderer(colors=is_tty)]
    else:
        final = [
            structlog.processors.format_exc_info,
            _leading_keys_first,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _LockdHandler(target)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LockdHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger taken at import time follows a later configure_logging.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named like a stdlib one (`lockd.auth.locks`)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger


_LEADING_KEYS = ("timestamp", "level", "logger", "event")


def _leading_keys_first(
    logger: object, method_name: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """timestamp, level, logger and event open every JSON line; other keys follow."""
    leading = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    return {**leading, **event_dict}


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False

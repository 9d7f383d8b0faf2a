"""Process logging: text (as always) or one JSON object per line with `OSIRIS_LOG_FORMAT=json`.

A JSON line carries `ts` (ISO 8601 UTC), `level`, `logger`, `message` (formatted), `pid`,
and when known `actor` (the logger `osiris.<actor>`), `node`, `subject`, `trace_id`,
`span_id` (`osiris_core.observability.logctx`) and `exc` (the traceback). Empty fields are left out.

A Formatter subclass rather than python-json-logger: the fields are fixed and few, msgspec
already encodes them, and one dependency less is one less to pin in every image.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any

import msgspec

from osiris_core.errors import ConfigError
from osiris_core.observability import logctx

__all__ = ["FORMATS", "LOG_FORMAT_ENV", "JsonFormatter", "granian_log_config", "log_format",
           "notice", "setup_logging"]

LOG_FORMAT_ENV = "OSIRIS_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_encode = msgspec.json.Encoder().encode


def log_format() -> str:
    """`OSIRIS_LOG_FORMAT` (default text); anything else than text or json is a ConfigError."""
    value = os.environ.get(LOG_FORMAT_ENV, "").strip().lower() or "text"
    if value not in FORMATS:
        raise ConfigError(f"{LOG_FORMAT_ENV}={os.environ[LOG_FORMAT_ENV]!r} is not a log "
                          f"format: use {' or '.join(FORMATS)}")
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        actor = logctx.actor_of(record.name)
        if actor:
            out["actor"] = actor
        node = logctx.node()
        if node:
            out["node"] = node
        subject = logctx.subject_of(record)
        if subject:
            out["subject"] = subject
        trace, span = logctx.trace_ids(record)
        if trace:
            out["trace_id"] = trace
        if span:
            out["span_id"] = span
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return _encode(out).decode()


def _formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def setup_logging(level: str | None = None) -> None:
    """Log to stderr in the format of `OSIRIS_LOG_FORMAT`, at `level` (None: keep the
    root's). Like `logging.basicConfig`, it leaves a root logger that already has someone
    else's handlers alone (pytest's capture); called again, it only changes the level."""
    fmt = log_format()
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_osiris", False)]
    if not ours and root.handlers:
        return
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler._osiris = True  # type: ignore[attr-defined]
        handler.setFormatter(_formatter(fmt))
        root.addHandler(handler)
        if fmt == "json":  # warnings and a crash's traceback as JSON lines too
            logging.captureWarnings(True)
            sys.excepthook = _log_uncaught
    if level is not None:
        root.setLevel(getattr(logging, level.upper(), logging.INFO))


def _log_uncaught(tp: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("osiris").critical("uncaught %s", tp.__name__, exc_info=(tp, exc, tb))


def notice(text: str, level: int = logging.INFO, logger: str = "osiris.cli") -> None:
    """A line for the operator whatever the log level ("osiris: ready on …"): plain on stderr
    in text mode, a log record of `logger` (past its level) in JSON mode."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        log = logging.getLogger(logger)
        log.handle(log.makeRecord(log.name, level, "(notice)", 0, text, (), None))
        return
    print(text, file=sys.stderr, flush=True)


def granian_log_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for granian (standalone gateway): its own loggers and
    ours, in each worker, in the format of `OSIRIS_LOG_FORMAT`."""
    fmt = log_format()
    formatter: dict[str, Any] = ({"()": f"{__name__}.JsonFormatter"} if fmt == "json"
                                 else {"format": TEXT_FORMAT})
    handler = {"class": "logging.StreamHandler", "formatter": "osiris",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"osiris": formatter},
        "handlers": {"osiris": handler},
        "root": {"handlers": ["osiris"], "level": getattr(logging, level.upper(), logging.INFO)},
        "loggers": {"_granian": {"handlers": ["osiris"], "propagate": False},
                    "granian.access": {"handlers": ["osiris"], "propagate": False}},
    }

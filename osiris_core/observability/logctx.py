"""What a log line or an error report says about where it came from: trace ids, node, actor.

The hook between tracing and logging. `osiris_core.observability.tracing` sets `TRACE_ID` / `SPAN_ID`
while a request's or an event's span is current (when tracing is on); the JSON log
formatter (`osiris_core.observability.logs`), the Sentry tags (`osiris_core.observability.sentry`) and the metric
exemplars (`osiris_core.observability.metrics`) read them, and leave the fields out while they are empty.
A log record that carries `trace_id` / `span_id` attributes (`log.info(..., extra={...})`)
wins over the context.

`set_node` and `add_actors` are process-wide: one `osiris run` is one node, and the runtime
says which actors it runs, so that a record of the logger `osiris.<actor>` is attributed to
that actor and one of a core module (`osiris.runtime`, `osiris.cli` …) is not.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar

__all__ = ["SPAN_ID", "TRACE_ID", "actor_of", "add_actors", "node", "set_node", "subject_of",
           "trace_ids"]

TRACE_ID: ContextVar[str] = ContextVar("osiris_trace_id", default="")
"""The current W3C trace id (32 hex digits), or "" outside a traced request or event."""
SPAN_ID: ContextVar[str] = ContextVar("osiris_span_id", default="")
"""The current span id (16 hex digits), or ""."""

_node = ""
_actors: set[str] = set()
_SUBJECT = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)+$")


def set_node(name: str) -> None:
    """This process's node name (`[osiris].node`, or host-pid): the runtime sets it."""
    global _node
    _node = name


def node() -> str:
    return _node


def add_actors(names: Iterable[str]) -> None:
    """Actors this process runs: their loggers are `osiris.<name>`."""
    _actors.update(names)


def actor_of(logger_name: str) -> str:
    """The actor of a logger `osiris.<actor>` this process runs, else ""."""
    prefix, _, rest = logger_name.partition(".")
    return rest if prefix == "osiris" and rest in _actors else ""


def subject_of(record: logging.LogRecord) -> str:
    """The subject a record of an actor's logger is about: its `subject` attribute (`extra=`),
    else the first argument that is a dotted subject (the core logs a failed request as
    "%s: request on %s failed …" with the subject as an argument), else ""."""
    given = getattr(record, "subject", None)
    if isinstance(given, str):
        return given
    if not actor_of(record.name) or not isinstance(record.args, tuple):
        return ""
    for arg in record.args:
        if isinstance(arg, str) and _SUBJECT.match(arg):
            return arg
    return ""


def trace_ids(record: logging.LogRecord | None = None) -> tuple[str, str]:
    """(trace_id, span_id) of a record (its attributes) or of the current context."""
    trace = getattr(record, "trace_id", None) or TRACE_ID.get()
    span = getattr(record, "span_id", None) or SPAN_ID.get()
    return str(trace), str(span)

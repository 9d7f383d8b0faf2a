"""Error reporting to Sentry when `SENTRY_DSN` is set (`SENTRY_ENV`, `SENTRY_TRACES_SAMPLE_RATE`).

`init_sentry()` is called once per process, on its running loop (the asyncio integration
patches that loop's task factory), by `osiris run`, `osiris demo` and each worker of the
standalone gateway. The logging integration turns every ERROR record with an exception
into an event — a handler that fails is logged with `log.exception` by the core, so it
becomes one — tagged with `actor`, `subject`, `node` and `trace_id` (`osiris_core.observability.logctx`).
Without `SENTRY_DSN`, sentry_sdk is not even imported.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from osiris_core.errors import ConfigError
from osiris_core.observability import logctx

__all__ = ["DSN_ENV", "ENV_ENV", "TRACES_ENV", "flush", "init_sentry"]

DSN_ENV = "SENTRY_DSN"
ENV_ENV = "SENTRY_ENV"
TRACES_ENV = "SENTRY_TRACES_SAMPLE_RATE"
_initialised = False


def _traces_rate() -> float:
    raw = os.environ.get(TRACES_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{TRACES_ENV}={raw!r}: expected a number from 0 to 1")
    return rate


def init_sentry() -> bool:
    """Start the Sentry SDK if `SENTRY_DSN` is set (once per process); True when it runs.

    A DSN that does not parse, a bad sample rate or a missing sentry-sdk is a ConfigError
    naming the variable. Call it with the process's event loop running."""
    global _initialised
    dsn = os.environ.get(DSN_ENV, "").strip()
    if not dsn:
        return False
    if _initialised:
        return True
    try:
        import sentry_sdk
        from sentry_sdk.integrations.asyncio import AsyncioIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.utils import BadDsn, Dsn
    except ImportError:  # pragma: no cover - a plain dependency of osiris
        raise ConfigError(f"{DSN_ENV} is set but sentry-sdk is not installed "
                          "(pip install sentry-sdk)") from None
    try:
        Dsn(dsn)
    except BadDsn as e:
        raise ConfigError(f"{DSN_ENV} is not a valid Sentry DSN ({e}): expected "
                          "https://KEY@HOST/PROJECT_ID, or unset it") from None
    rate = _traces_rate()
    sentry_sdk.init(
        dsn=dsn,
        environment=os.environ.get(ENV_ENV, "").strip() or None,
        traces_sample_rate=rate,
        integrations=[
            # per-task spans only when traces are sampled: they cost every request a scope
            AsyncioIntegration(task_spans=rate > 0),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        before_send=_tag,
    )
    _initialised = True
    return True


def _tag(event: Any, hint: dict[str, Any]) -> Any:
    """Tag an event with where it came from (the log record's actor and subject, the node,
    the trace id)."""
    record = hint.get("log_record")
    tags = event.get("tags")
    if not isinstance(tags, dict):
        tags = event["tags"] = {}
    actor = logctx.actor_of(str(event.get("logger") or getattr(record, "name", "")))
    node = logctx.node()
    trace, _ = logctx.trace_ids(record)
    for key, value in (("actor", actor), ("node", node), ("trace_id", trace),
                       ("subject", logctx.subject_of(record) if record is not None else "")):
        if value:
            tags.setdefault(key, value[:200])
    return event


def flush(timeout: float = 2.0) -> None:
    """Send what is queued (before a process leaves with `os._exit`)."""
    if _initialised:
        import sentry_sdk

        sentry_sdk.flush(timeout)

"""What the request being served used: model actors report their tokens here, the dispatcher
hands them to tracing (span attributes) and metrics (per-actor token counters).

The dispatcher opens a `Usage` for each request (`begin()` … `end(token)`); a handler calls
`record_tokens(prompt, completion)` once per generation, from the request's task (not from an
executor thread: a ContextVar set there is not seen here). Outside a request it is a no-op.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass

__all__ = ["Usage", "begin", "current", "end", "enter", "record_tokens"]


@dataclass(slots=True)
class Usage:
    """Tokens one request used (all generations it ran)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def any(self) -> bool:
        return bool(self.prompt_tokens or self.completion_tokens)


_CURRENT: ContextVar[Usage | None] = ContextVar("osiris_usage", default=None)


def begin() -> tuple[Usage, Token[Usage | None]]:
    """A fresh `Usage` for the request about to run in this context."""
    usage = Usage()
    return usage, _CURRENT.set(usage)


def enter() -> Usage:
    """A fresh `Usage` for the request about to run, in a context of its own (the
    dispatcher runs each request in a copied context, so there is nothing to reset)."""
    usage = Usage()
    _CURRENT.set(usage)
    return usage


def end(token: Token[Usage | None]) -> None:
    _CURRENT.reset(token)


def current() -> Usage | None:
    return _CURRENT.get()


def record_tokens(prompt: int, completion: int) -> None:
    """Count one generation's tokens against the request being served (if any)."""
    usage = _CURRENT.get()
    if usage is not None:
        usage.prompt_tokens += max(prompt, 0)
        usage.completion_tokens += max(completion, 0)

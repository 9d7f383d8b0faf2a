"""Errors a handler raises on purpose, and how they travel on the wire.

A handler raises `ServiceError` (or a subclass) for an expected failure: the caller gets an
error reply with that code and the actor keeps running. Any other exception is a crash: the
caller gets a 500 and the supervisor restarts the actor.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "ConfigError",
    "NotFound",
    "OsirisError",
    "RequestTimeout",
    "ServiceError",
    "Unavailable",
]

ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"


class OsirisError(Exception):
    """Base of every error osiris raises on purpose."""


class ConfigError(OsirisError):
    """Bad configuration; the message names the file, table and key."""


class ServiceError(OsirisError):
    """An expected request failure with an HTTP-like status code and a JSON-able detail."""

    code: int = 500

    def __init__(
        self, message: str, *, code: int | None = None, field: str | None = None, **detail: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.detail = detail or None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


class BadRequest(ServiceError):
    """The payload is malformed or a field is invalid (400)."""

    code = 400


class NotFound(ServiceError):
    """The thing asked for does not exist (404)."""

    code = 404


class Unavailable(ServiceError):
    """The actor cannot serve now: paused, not loaded, failed, no responders (503)."""

    code = 503


class RequestTimeout(ServiceError):
    """No reply in time (504)."""

    code = 504

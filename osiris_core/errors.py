"""Errors a handler raises on purpose, and how they travel on the wire.

A handler raises `ServiceError` (or a subclass) for an expected failure: the caller gets an
error reply with that code. Any other exception while serving one request is that request's
500; the actor keeps running either way. Only `ActorFatal` (the engine knows its state is
corrupt) restarts the actor from a handler.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorFatal",
    "BadRequest",
    "InvalidField",
    "NoResponders",
    "PayloadTooLarge",
    "ConfigError",
    "Forbidden",
    "NotFound",
    "OsirisError",
    "RequestTimeout",
    "ServiceError",
    "Unavailable",
]

ERROR_HEADER = "Nats-Service-Error"
ERROR_CODE_HEADER = "Nats-Service-Error-Code"
RETRY_ELSEWHERE_HEADER = "Osiris-Retry-Elsewhere"
"""`1` on an error reply whose request another replica may serve (this one was cut off by
its shutdown, has failed, or is overloaded): a watching caller re-sends it there. The body
says it too (`detail.retry_elsewhere`), for clients that read only the body."""


class OsirisError(Exception):
    """Base of every error osiris raises on purpose."""


class ConfigError(OsirisError):
    """Bad configuration; the message names the file, table and key."""


class ServiceError(OsirisError):
    """An expected request failure with an HTTP-like status code and a JSON-able detail."""

    code: int = 500

    retry_elsewhere: bool = False
    """Another replica may serve the request (sent as `RETRY_ELSEWHERE_HEADER`)."""

    def __init__(
        self, message: str, *, code: int | None = None, field: str | None = None,
        retry_elsewhere: bool = False, **detail: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.retry_elsewhere = retry_elsewhere
        if retry_elsewhere:
            detail["retry_elsewhere"] = True
        self.detail = detail or None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}, {self.message!r})"


class BadRequest(ServiceError):
    """The payload is malformed or a field is invalid (400)."""

    code = 400


class InvalidField(BadRequest):
    """A field of a well-formed payload is invalid (422, `field` names it), as over HTTP."""

    code = 422


class PayloadTooLarge(ServiceError):
    """A request or its reply is larger than the connection's `max_payload` (413)."""

    code = 413


class NotFound(ServiceError):
    """The thing asked for does not exist (404)."""

    code = 404


class Forbidden(ServiceError):
    """NATS refused this connection's user the publish a request needs (permissions
    violation under `osiris nats-config`): the role lacks a grant (403)."""

    code = 403


class Unavailable(ServiceError):
    """The actor cannot serve now: paused, not loaded, failed, no responders (503)."""

    code = 503


class NoResponders(Unavailable):
    """Nobody serves the subject (no actor subscribed, none starting)."""


class RequestTimeout(ServiceError):
    """No reply in time (504)."""

    code = 504


class ActorFatal(OsirisError):
    """Raise from a handler when the actor's own state is corrupt (a wedged engine, a lost
    device): the request fails with a 500 and the supervisor restarts the actor. Counts
    towards the restart intensity; any other exception fails only the request."""

"""One place that turns failures into HTTP: osiris errors, validation, auth, limits.

`osiris_core.errors` map centrally (BadRequest→400, NotFound→404, Unavailable→503,
RequestTimeout→504, any other actor error→502); routes under `/v1/` answer OpenAI's error
shape, every other route the seeds' `{"error": ...}`.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from osiris_core.errors import ServiceError

from .schemas import ErrorBody, OpenAIError, OpenAIErrorBody

__all__ = [
    "ClientDisconnected",
    "HttpError",
    "RateLimited",
    "exception_handlers",
    "openai_error",
    "status_for",
]

log = logging.getLogger("osiris.gateway")

_STATUS = {400: 400, 404: 404, 413: 413, 422: 422, 429: 429, 503: 503, 504: 504}
_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
    429: "rate_limit_error", 503: "service_unavailable", 504: "timeout",
}


class HttpError(Exception):
    """A response the gateway decided on: status, seed-shaped body, extra headers."""

    def __init__(self, status: int, body: ErrorBody, headers: dict[str, str] | None = None):
        super().__init__(body.error)
        self.status = status
        self.body = body
        self.headers = headers or {}


class RateLimited(HttpError):
    def __init__(self, retry_after: float) -> None:
        secs = max(1, math.ceil(retry_after))
        super().__init__(
            429,
            ErrorBody(error="Rate limit exceeded: too many generation requests from this client.",
                      retry_after=round(retry_after, 3)),
            {"Retry-After": str(secs)},
        )


class ClientDisconnected(Exception):
    """The HTTP client went away; the upstream request was cancelled."""


def status_for(err: ServiceError) -> int:
    """HTTP status of an actor's error: its own code when it is one we forward, else 502."""
    return _STATUS.get(err.code, 502)


def service_error_body(err: ServiceError) -> ErrorBody:
    detail = err.detail or None
    return ErrorBody(error=err.message, field=err.field, detail=detail)


def _is_openai(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/v1/")


def openai_error(status: int, body: ErrorBody) -> OpenAIErrorBody:
    """The OpenAI error shape of an error (a response's body, or a stream's last event)."""
    return OpenAIErrorBody(error=OpenAIError(
        message=body.error, type=_OPENAI_TYPES.get(status, "api_error"), param=body.field,
        code=str(status)))


def _respond(request: Request[Any, Any, Any], status: int, body: ErrorBody,
             headers: dict[str, str] | None = None) -> Response[Any]:
    payload: Any = openai_error(status, body) if _is_openai(request) else body
    return Response(msgspec.json.encode(payload), status_code=status, headers=headers,
                    media_type="application/json")


def on_http_error(request: Request[Any, Any, Any], exc: HttpError) -> Response[Any]:
    return _respond(request, exc.status, exc.body, exc.headers)


def on_service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    return _respond(request, status_for(exc), service_error_body(exc))


_AT = re.compile(r"at `\$\.?(?P<path>[^`]*)`")
_KEY = re.compile(r"(?:unknown|missing required) field `(?P<key>[^`]+)`")


def _field_of(message: str, key: str | None) -> str | None:
    """Dotted path of the offending field, from msgspec's message (`corrected_proposal.action`)."""
    at, name = _AT.search(message), _KEY.search(message)
    where = key if key not in (None, "", "data") else (at.group("path") if at else "")
    parts = [p for p in (where, name.group("key") if name else "") if p]
    if parts:
        return ".".join(parts).replace(".[", "[")
    return None


def on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Body/query validation: 422 naming the field; 400 when the body is not JSON at all."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    fields = [e for e in extra if isinstance(e, dict)]
    first = fields[0] if fields else {}
    message = str(first.get("message") or exc.detail)
    key = _field_of(message, first.get("key"))
    if key is None and first.get("source") != "query":
        return _respond(request, 400, ErrorBody(error=f"Invalid JSON body: {message}"))
    key = key or first.get("key")
    body = ErrorBody(error=f"Invalid request: field {key!r}: {message}", field=key,
                     detail=fields or None)
    return _respond(request, 422, body)


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="osiris"')
    if status == 413:
        text = exc.detail if exc.detail != "Request Entity Too Large" else "Request body too large"
    else:
        text = exc.detail
    if isinstance(exc, PermissionDeniedException | NotAuthorizedException):
        text = exc.detail
    elif status == 400 and type(exc) is ClientException:  # Litestar could not decode the body
        text = f"Invalid JSON body: {exc.detail}"
    if status >= 500:
        log.error("gateway error on %s: %s", request.url.path, exc.detail)
    return _respond(request, status, ErrorBody(error=text), headers)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("gateway: unexpected error on %s %s", request.method, request.url.path)
    return _respond(request, HTTP_500_INTERNAL_SERVER_ERROR,
                    ErrorBody(error=f"Internal gateway error: {type(exc).__name__}"))


exception_handlers: dict[Any, Any] = {
    HttpError: on_http_error,
    ServiceError: on_service_error,
    ValidationException: on_validation,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}

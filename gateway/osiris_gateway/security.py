"""The edge: bearer API key, admin key for control routes, per-client rate limit.

Keys are compared in constant time. The API key may come as `Authorization: Bearer KEY` or
`X-API-Key: KEY`, and for GET requests as `?api_key=KEY` (a browser's EventSource cannot
set headers). `/health` is always open, so load balancers can poll it.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from .errors import RateLimited

__all__ = ["TokenBuckets", "admin_guard", "api_key_middleware", "client_key", "presented_key",
           "rate_limit_guard"]

PUBLIC = "public"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def presented_key(conn: ASGIConnection[Any, Any, Any, Any], *, header: str = "x-api-key") -> str:
    auth = conn.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = conn.headers.get(header, "")
    if key:
        return key
    if conn.scope.get("method") == "GET" and header == "x-api-key":
        return conn.query_params.get("api_key", "")
    return ""


def api_key_middleware(app: Any) -> Any:
    """ASGI middleware (after routing; Litestar guards copy the handler per call, ~60 µs):
    every route but the `public` ones needs the API key when one is configured."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        gw = scope["app"].state.gw
        expected: str = gw.config.api_key
        handler = scope.get("route_handler")
        if expected and scope["type"] == "http" and not (handler and handler.opt.get(PUBLIC)):
            conn: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope, receive)
            got = presented_key(conn)
            admin: str = gw.config.admin_key
            if not (got and (_same(got, expected) or (admin and _same(got, admin)))):
                raise NotAuthorizedException(
                    "Missing or invalid API key (send 'Authorization: Bearer <key>').")
        await app(scope, receive, send)

    return middleware


async def admin_guard(conn: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    admin: str = conn.app.state.gw.config.admin_key
    if not admin:
        raise PermissionDeniedException(
            "Control operations are disabled: set [plugins.gateway].admin_key or OSIRIS_ADMIN_KEY.")
    got = conn.headers.get("x-admin-key", "") or presented_key(conn)
    if not got or not _same(got, admin):
        raise PermissionDeniedException("Control operations need the admin key "
                                        "('X-Admin-Key: <key>' or 'Authorization: Bearer <key>').")


def client_key(conn: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Who a request counts against: its API key when keys are on, else its address."""
    key = presented_key(conn)
    if key:
        return "key:" + key[-12:]
    client = conn.scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class TokenBuckets:
    """Per-client token buckets: `rate` tokens/s sustained, `burst` at once. Bounded memory:
    full (idle) buckets are dropped when the table grows."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float | None = None) -> float:
        """0.0 when a token was taken, else seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self.buckets[client] = (tokens - 1.0, now)
            if len(self.buckets) > self.max_clients:
                self._prune(now)
            return 0.0
        self.buckets[client] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [c for c, (t, last) in self.buckets.items()
                if t + (now - last) * self.rate >= self.burst]
        for c in full:
            del self.buckets[c]


async def rate_limit_guard(conn: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    wait = conn.app.state.gw.limiter.take(client_key(conn))
    if wait > 0:
        conn.app.state.gw.metrics.rate_limited(conn.scope.get("path_template") or conn.url.path)
        raise RateLimited(wait)

"""The gateway's span of each HTTP request: it continues the caller's `traceparent` (or starts
a trace), and every bus request a route makes is its child (`osiris_core.observability.tracing`).

Installed only when tracing is asked for (`OTEL_EXPORTER_OTLP_ENDPOINT`): otherwise the app
has no such middleware at all.
"""

from __future__ import annotations

from typing import Any

from osiris_core.observability import logctx, tracing

__all__ = ["tracing_middleware"]


def tracing_middleware(app: Any) -> Any:
    """ASGI middleware (after routing: the span is named by the route template)."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not tracing.ON:
            await app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())
                   if k.lower() in (b"traceparent", b"tracestate", b"baggage")}
        method = scope["method"]
        route = scope.get("path_template") or scope["path"]
        span = tracing.processing(
            route, headers, actor="gateway", node=logctx.node(), name=f"{method} {route}",
            attributes={"http.request.method": method, "http.route": route,
                        "url.path": scope["path"]})
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                span.span.set_attribute("http.response.status_code", status)
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            span.end(status if status >= 500 else None, f"HTTP {status}")

    return middleware

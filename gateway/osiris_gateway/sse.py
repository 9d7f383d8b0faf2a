"""An SSE response that keeps `text/event-stream` even from a handler whose declared
(OpenAPI) return type is JSON: Litestar otherwise applies the handler's media type."""

from __future__ import annotations

from typing import Any

from litestar.response import ServerSentEvent

__all__ = ["EventStream"]

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class EventStream(ServerSentEvent):
    def __init__(self, content: Any, **kw: Any) -> None:
        super().__init__(content, headers={**HEADERS, **kw.pop("headers", {})}, **kw)

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["media_type"] = "text/event-stream"
        return super().to_asgi_response(*args, **kwargs)

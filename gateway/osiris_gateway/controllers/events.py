"""`GET /events?subjects=a,b`: server-sent events of allowed event subjects."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import ServerSentEvent

from ..errors import HttpError
from ..schemas import ErrorBody
from .generate import error_responses
from .voice import sse_of_events

__all__ = ["EventsController"]


class EventsController(Controller):
    tags = ["events"]

    @get("/events", media_type="text/event-stream", responses=error_responses(400, 401, 503),
         summary="SSE of event subjects (`event: <subject>`, `data: <JSON payload>`)")
    async def events(
        self, request: Request[Any, Any, Any],
        subjects: Annotated[str, QueryParameter(
            description="Comma-separated subjects or NATS wildcard patterns "
            "from the event catalogue, e.g. `phi3.proposal.created,audio.bytes` or `phi3.>`",
            min_length=1, max_length=2000)],
    ) -> ServerSentEvent:
        gw = request.app.state.gw
        wanted = [s for s in subjects.split(",") if s.strip()]
        if not wanted or len(wanted) > 32:
            raise HttpError(400, ErrorBody(error="give 1 to 32 comma-separated subjects",
                                           field="subjects"))
        try:
            patterns = gw.allowed_events(wanted)
        except ValueError as e:
            raise HttpError(400, ErrorBody(
                error=f"subject {e.args[0]!r} is not an allowed event subject",
                field="subjects", detail=sorted(gw.event_subjects))) from None
        return await sse_of_events(request, patterns, "events", named=True)

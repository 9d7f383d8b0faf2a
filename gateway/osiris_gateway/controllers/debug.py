"""`GET /debug/prof`: a live profile of the gateway's own process (admin key).

Mounted only when `ENABLE_PROFILING` (the seeds' variable) is truthy when the app is built;
otherwise the path is a plain 404. Actors' processes are profiled over the bus instead
(`osiris profile ACTOR|NODE`).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.params import Parameter

from osiris_core.observability.profiling import ProfileBusy, profile_process

from ..errors import HttpError
from ..schemas import ErrorBody
from ..security import admin_guard
from .generate import error_responses

__all__ = ["ENABLE_PROFILING", "DebugController", "profiling_enabled"]

ENABLE_PROFILING = "ENABLE_PROFILING"
_TRUE = {"1", "true", "yes", "on"}


def profiling_enabled(environ: Any = None) -> bool:
    """Whether `ENABLE_PROFILING` is truthy (1, true, yes, on)."""
    env = os.environ if environ is None else environ
    return str(env.get(ENABLE_PROFILING, "")).strip().lower() in _TRUE


class DebugController(Controller):
    path = "/debug"
    tags = ["ops"]

    @get("/prof", guards=[admin_guard], summary="Profile the gateway's process (every thread)",
         responses=error_responses(401, 403, 409, 422), cache_control=None)
    async def prof(
        self, request: Request[Any, Any, Any],
        seconds: Annotated[float, Parameter(ge=0.1, le=60,
                                            description="How long to sample")] = 5.0,
        format: Annotated[Literal["html", "speedscope"],  # noqa: A002 - the query's name
                          Parameter(description="pyinstrument HTML or speedscope JSON")] = "html",
    ) -> Response[bytes]:
        try:
            prof = await profile_process(seconds, target="gateway")
        except ProfileBusy as e:
            raise HttpError(409, ErrorBody(error=e.message)) from None
        body = await asyncio.to_thread(prof.render, format)
        if format == "html":
            return Response(body, media_type="text/html; charset=utf-8")
        name = f"profile-gateway-{time.strftime('%Y%m%d-%H%M%S')}.speedscope.json"
        return Response(body, media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

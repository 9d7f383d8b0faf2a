"""Operations: `/health` (open), `/metrics` (unless `ENABLE_METRICS` is false), and actor
status and control.

Control ops (pause, resume, restart, adapters) map to `osiris.<actor>.control` and need the
admin key; reading an actor's status needs only the API key.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

import msgspec
from litestar import Controller, MediaType, Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody

from osiris_core.errors import NoResponders, ServiceError
from osiris_core.observability.metrics import exposition
from osiris_core.protocol import (
    ControlOp,
    ControlRequest,
    PauseOp,
    RestartOp,
    ResumeOp,
    StatusOp,
)
from osiris_core.subjects import control

from ..errors import HttpError, service_error_body, status_for
from ..metrics import CONTENT_TYPE_LATEST
from ..schemas import ActorControlReply, AdapterBody, ErrorBody, HealthResponse
from ..security import PUBLIC, admin_guard
from .generate import error_responses

__all__ = ["ActorsController", "HealthController", "MetricsController"]

ACTOR_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # never a subject wildcard or separator


class HealthController(Controller):
    tags = ["ops"]

    @get("/health", summary="Seed health fields plus per-actor detail, from live actors",
         opt={PUBLIC: True}, cache_control=None)
    async def health(self, request: Request[Any, Any, Any]) -> HealthResponse:
        snap: HealthResponse = await request.app.state.gw.health.get()
        return snap


class MetricsController(Controller):
    """Mounted unless `ENABLE_METRICS` is false (then the path is a plain 404)."""

    tags = ["ops"]

    @get("/metrics", summary="Prometheus metrics: the gateway's and this process's actors' "
         "(OpenMetrics, with trace-id exemplars, when Accept asks for it)",
         media_type=CONTENT_TYPE_LATEST, responses=error_responses(401), include_in_schema=True)
    async def metrics(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        gw = request.app.state.gw
        registries = [gw.metrics.registry]
        if gw.process_metrics is not None:
            registries.append(gw.process_metrics.registry)
        body, content_type = exposition(request.headers.get("accept"), *registries)
        return Response(body, media_type=content_type)


def _actor(name: str) -> str:
    if not ACTOR_NAME.match(name):
        raise HttpError(400, ErrorBody(error=f"invalid actor name {name!r}", field="name"))
    return name


async def _control(request: Request[Any, Any, Any], name: str,
                   op: ControlOp[Any] | ControlRequest,
                   timeout: float | None = None) -> Response[ActorControlReply]:
    """The actor's ControlReply JSON passes through as it is (no decode, no re-encode)."""
    gw = request.app.state.gw
    actor = _actor(name)
    try:
        raw: bytes = await gw.call(
            None, actor, control(actor), op, reply_type=bytes, timeout=timeout)
    except NoResponders as e:  # nobody answers that control subject: no such actor
        raise HttpError(404, ErrorBody(error=f"no live actor named {actor!r}", actor=actor,
                                       detail=e.message)) from None
    except ServiceError as e:
        body = service_error_body(e)
        body.actor = actor
        raise HttpError(status_for(e), body) from None
    return Response(raw, media_type=MediaType.JSON)  # type: ignore[arg-type]


CONTROL_ERRORS = error_responses(400, 401, 403, 404, 413, 422, 502, 503, 504)


class ActorsController(Controller):
    path = "/actors"
    tags = ["control"]

    @get("/", summary="Live actors (as /health reports them)", responses=error_responses(401))
    async def list_actors(self, request: Request[Any, Any, Any]) -> HealthResponse:
        snap: HealthResponse = await request.app.state.gw.health.get()
        return snap

    @get("/{name:str}", summary="One actor's status (osiris.<name>.control status)",
         responses=error_responses(400, 401, 404, 502, 503, 504))
    async def status(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[ActorControlReply]:
        return await _control(request, name, StatusOp())

    @post("/{name:str}/pause", guards=[admin_guard], status_code=200, responses=CONTROL_ERRORS,
          summary="Pause a model actor (frees its accelerator memory)")
    async def pause(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[ActorControlReply]:
        return await _control(request, name, PauseOp(), timeout=60.0)

    @post("/{name:str}/resume", guards=[admin_guard], status_code=200, responses=CONTROL_ERRORS,
          summary="Resume a paused actor")
    async def resume(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[ActorControlReply]:
        return await _control(request, name, ResumeOp(), timeout=120.0)

    @post("/{name:str}/restart", guards=[admin_guard], status_code=200, responses=CONTROL_ERRORS,
          summary="Restart an actor (also revives a failed one)")
    async def restart(self, request: Request[Any, Any, Any], name: FromPath[str]) -> Response[ActorControlReply]:
        return await _control(request, name, RestartOp(), timeout=120.0)

    @post("/{name:str}/adapters", guards=[admin_guard], status_code=200,
          responses=CONTROL_ERRORS, summary="Load (and activate) an adapter on a model actor")
    async def load_adapter(self, request: Request[Any, Any, Any], name: FromPath[str],
                           data: JSONBody[AdapterBody]) -> Response[ActorControlReply]:
        args = msgspec.to_builtins(data)
        args["name"] = data.name or PurePath(data.path).name  # an adapter is known by a name
        return await _control(request, name, ControlRequest(op="load_adapter", args=args),
                              timeout=120.0)

    @delete("/{name:str}/adapters/{adapter:str}", guards=[admin_guard], status_code=200,
            responses=CONTROL_ERRORS, summary="Unload an adapter from a model actor")
    async def unload_adapter(self, request: Request[Any, Any, Any], name: FromPath[str],
                             adapter: FromPath[str]) -> Response[ActorControlReply]:
        return await _control(request, name,
                              ControlRequest(op="unload_adapter", args={"name": adapter}),
                              timeout=60.0)

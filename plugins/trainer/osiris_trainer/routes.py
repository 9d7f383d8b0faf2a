"""HTTP for the trainer, mounted by the gateway through `register_routes`: `POST /trainer/train`
(the admin key: "train now") and `GET /trainer/reports` (every run's gate table)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import JSONBody, Parameter
from osiris_gateway.controllers.generate import error_responses
from osiris_gateway.errors import HttpError, service_error_body, status_for
from osiris_gateway.security import admin_guard

from osiris_core.errors import ServiceError

from .config import TrainerConfig
from .contracts import TRAINER_REPORTS, TRAINER_TRAIN, ReportsRequest, TrainReports, TrainRequest

__all__ = ["TrainStarted", "TrainerController"]

ANSWER_WITHIN_S = 2.0
"""A run refused at once (one already running, no base model) or over at once (no new
corrections) answers the POST; a longer one answers 202 and goes on."""
_runs: set[asyncio.Task[Any]] = set()  # a started run's reply is awaited here, not dropped


class TrainStarted(msgspec.Struct, kw_only=True):
    started: bool
    message: str


def _http(err: ServiceError) -> HttpError:
    body = service_error_body(err)
    body.actor = "trainer"
    return HttpError(status_for(err), body)


class TrainerController(Controller):
    path = "/trainer"
    tags = ["learning"]

    @post("/train", guards=[admin_guard], status_code=200,
          responses=error_responses(401, 403, 422, 502, 503, 504),
          summary="Train an adapter now (admin key): the result when it is over within 2 s, "
                  "else 202 — progress and result in GET /actors/trainer (facts)")
    async def train(self, request: Request[Any, Any, Any],
                    data: JSONBody[TrainRequest]) -> Response[Any]:
        gw = request.app.state.gw
        call = asyncio.ensure_future(gw.call(
            None, "trainer", TRAINER_TRAIN.name, data, reply_type=bytes,
            timeout=TrainerConfig().train_timeout_s))
        done, _ = await asyncio.wait({call}, timeout=ANSWER_WITHIN_S)
        if call in done:
            try:
                raw: bytes = call.result()
            except ServiceError as e:
                raise _http(e) from None
            return Response(raw, media_type=MediaType.JSON)
        _runs.add(call)
        call.add_done_callback(_forget)
        return Response(TrainStarted(
            started=True, message="training started: follow GET /actors/trainer (facts.progress, "
                                  "then facts.last_run)"), status_code=202)

    @get("/reports", responses=error_responses(401, 502, 503, 504),
         summary="Every trained adapter's report: gate table, published or refused and why")
    async def reports(self, request: Request[Any, Any, Any],
                      limit: Annotated[int, Parameter(ge=1, le=500)] = 50) -> TrainReports:
        gw = request.app.state.gw
        try:
            reply: TrainReports = await gw.call(None, "trainer", TRAINER_REPORTS.name,
                                                ReportsRequest(limit=limit),
                                                reply_type=TrainReports)
        except ServiceError as e:
            raise _http(e) from None
        return reply


def _forget(task: asyncio.Task[Any]) -> None:
    _runs.discard(task)
    with contextlib.suppress(BaseException):  # the trainer records its outcome in its facts
        task.result()


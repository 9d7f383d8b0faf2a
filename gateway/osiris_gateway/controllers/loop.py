"""Seed routes of the feedback loop: `/propose_trade_adjustments/` and `/feedback/phi3/`."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, post
from litestar.params import JSONBody

from osiris_contracts.messages import FeedbackAck, FeedbackItem, ProposeReply, ProposeRequest
from osiris_contracts.subjects import FEEDBACK_SUBMIT, PROPOSALS_PROPOSE
from osiris_core.errors import ServiceError

from ..errors import HttpError, status_for
from ..schemas import ErrorBody, ProposeBody
from ..security import rate_limit_guard
from .generate import error_responses

__all__ = ["FeedbackController", "ProposalsController"]


class ProposalsController(Controller):
    path = "/propose_trade_adjustments"
    tags = ["loop"]
    guards = [rate_limit_guard]

    @post("/", summary="phi3 proposal + hermes assessment (logged for the nightly loop)",
          responses=error_responses(400, 401, 413, 422, 429, 502, 503, 504), status_code=200)
    async def propose(self, request: Request[Any, Any, Any],
                      data: JSONBody[ProposeBody]) -> Response[ProposeReply]:
        gw = request.app.state.gw
        try:  # the orchestrator's ProposeReply JSON passes through unchanged
            raw: bytes = await gw.call(
                request, "orchestrator", PROPOSALS_PROPOSE.name,
                ProposeRequest(prompt=data.prompt, max_length=data.max_length),
                reply_type=bytes, timeout=gw.config.generate_timeout_s)
        except ServiceError as e:
            detail = dict(e.detail or {})
            phi3 = detail.pop("phi3_details", None)
            raise HttpError(status_for(e), ErrorBody(
                error=e.message, phi3_details=phi3, detail=detail or None, field=e.field,
                actor="orchestrator")) from None
        return Response(raw, media_type=MediaType.JSON)  # type: ignore[arg-type]


class FeedbackController(Controller):
    path = "/feedback/phi3"
    tags = ["loop"]

    @post("/", summary="Store a correction, rating or comment on a phi3 proposal",
          responses=error_responses(400, 401, 413, 422, 502, 503, 504), status_code=200)
    async def submit(self, request: Request[Any, Any, Any],
                     data: JSONBody[FeedbackItem]) -> Response[FeedbackAck]:
        gw = request.app.state.gw
        try:  # never cancelled by a disconnect (no request passed): a write completes
            raw: bytes = await gw.call(None, "feedback", FEEDBACK_SUBMIT.name, data,
                                       reply_type=bytes)
        except ServiceError as e:
            text = f"Failed to store feedback. Error: {e.message}"
            raise HttpError(status_for(e), ErrorBody(error=text, detail=text, field=e.field,
                                                     actor="feedback")) from None
        return Response(raw, media_type=MediaType.JSON)  # type: ignore[arg-type]

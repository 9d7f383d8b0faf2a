"""HTTP for the dgm, mounted by the gateway through `register_routes`: `POST /dgm/rollback`
(the admin key) serves the previous (or a named) policy variant again."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, post
from litestar.params import JSONBody
from osiris_gateway.controllers.generate import error_responses
from osiris_gateway.errors import HttpError, service_error_body, status_for
from osiris_gateway.security import admin_guard

from osiris_core.errors import ServiceError

from .contracts import DGM_ROLLBACK, RollbackReply, RollbackRequest

__all__ = ["DgmController"]

ROLLBACK_TIMEOUT_S = 60.0


class DgmController(Controller):
    path = "/dgm"
    tags = ["self-improvement"]

    @post("/rollback", guards=[admin_guard], status_code=200,
          responses=error_responses(400, 401, 403, 404, 422, 502, 503, 504),
          summary="Serve the previous (or a named) policy variant again (admin key)")
    async def rollback(self, request: Request[Any, Any, Any],
                       data: JSONBody[RollbackRequest]) -> Response[RollbackReply]:
        gw = request.app.state.gw
        try:  # the dgm's RollbackReply JSON passes through unchanged
            raw: bytes = await gw.call(None, "dgm", DGM_ROLLBACK.name, data, reply_type=bytes,
                                       timeout=ROLLBACK_TIMEOUT_S)
        except ServiceError as e:
            body = service_error_body(e)
            body.actor = "dgm"
            raise HttpError(status_for(e), body) from None
        return Response(raw, media_type=MediaType.JSON)  # type: ignore[arg-type]

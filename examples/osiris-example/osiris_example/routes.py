"""HTTP for the example plugin, mounted by the gateway through `register_routes`:
`POST /example/echo` maps to `osiris.example.echo` and holds no logic of its own."""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.params import JSONBody

from .contracts import EchoReply, EchoRequest
from .subjects import ECHO


@post("/example/echo", status_code=200, tags=["example"],
      summary="Echo a text through the example actor")
async def echo_route(request: Request[Any, Any, Any], data: JSONBody[EchoRequest]) -> EchoReply:
    # `app.state.gw` is the gateway's GatewayState: `call` is a bus request with metrics that
    # is cancelled upstream when the HTTP client goes away; actor errors become HTTP statuses
    # centrally (BadRequest → 400, Unavailable → 503, RequestTimeout → 504, others → 502).
    reply: EchoReply = await request.app.state.gw.call(request, "example", ECHO.name, data,
                                                       reply_type=EchoReply)
    return reply

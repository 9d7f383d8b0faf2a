"""The review desk: `GET /desk` (the page and its two assets) and `GET /store/{table}`, the
read-only rows the page starts from before live events take over.

The page and its assets are open: they carry code, never data, so a browser can load them
without a key; everything the page shows comes from routes that need the API key, which the
page sends as a header.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, Response, get
from litestar.params import FromPath, Parameter

from osiris_contracts import tables
from osiris_contracts.messages import StoreQuery, StoreRows
from osiris_contracts.subjects import STORE_QUERY
from osiris_core.errors import ServiceError

from ..errors import HttpError, service_error_body, status_for
from ..schemas import ErrorBody
from ..security import PUBLIC
from .generate import error_responses

__all__ = ["ASSETS", "DeskController", "StoreController"]

ASSETS = {"desk.js": "text/javascript; charset=utf-8", "desk.css": "text/css; charset=utf-8"}
PAGE = "desk.html"
MAX_ROWS = 500
COLUMN = re.compile(r"^[a-z_]{1,64}$")
SECURITY_HEADERS = {
    "Cache-Control": "no-cache",
    # nothing from elsewhere: the page runs offline and cannot be framed or made to call out
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' "
                               "blob: data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _asset(name: str) -> bytes:
    return resources.files("osiris_gateway").joinpath("desk", name).read_bytes()


class DeskController(Controller):
    path = "/desk"
    tags = ["desk"]

    @get("/", summary="The review desk (a page; it asks for the API key when one is set)",
         opt={PUBLIC: True}, media_type=MediaType.HTML, include_in_schema=True)
    async def page(self) -> Response[bytes]:
        return Response(_asset(PAGE), media_type=MediaType.HTML, headers=SECURITY_HEADERS)

    @get("/{name:str}", summary="The desk's script and style sheet", opt={PUBLIC: True},
         responses=error_responses(404), include_in_schema=False)
    async def asset(self, name: FromPath[str]) -> Response[bytes]:
        kind = ASSETS.get(name)
        if kind is None:
            raise HttpError(404, ErrorBody(error=f"no desk asset {name!r}"))
        return Response(_asset(name), media_type=kind, headers=SECURITY_HEADERS)


class StoreController(Controller):
    path = "/store"
    tags = ["loop"]

    @get("/{table:str}", summary="Recent rows of a store table (osiris.store.query)",
         responses=error_responses(400, 401, 404, 502, 503, 504))
    async def rows(
        self, request: Request[Any, Any, Any], table: FromPath[str],
        limit: Annotated[int, Parameter(ge=1, le=MAX_ROWS, description="Rows, newest first")] = 100,
        order_by: Annotated[str, Parameter(description="Column to order by (newest first)",
                                           max_length=64)] = "timestamp",
        transaction_id: Annotated[str | None, Parameter(
            description="Only the rows of this transaction", max_length=200)] = None,
    ) -> StoreRows:
        if table not in tables.ALL:
            raise HttpError(404, ErrorBody(error=f"no table {table!r}", field="table",
                                           detail={"tables": list(tables.ALL)}))
        if not COLUMN.match(order_by):
            raise HttpError(400, ErrorBody(error=f"invalid column {order_by!r}", field="order_by"))
        where = None
        if transaction_id is not None:  # a literal, quotes doubled: never SQL of the caller's
            where = "transaction_id = '" + transaction_id.replace("'", "''") + "'"
        gw = request.app.state.gw
        try:
            reply: StoreRows = await gw.call(
                None, "feedback", STORE_QUERY.name,
                StoreQuery(table=table, filter=where, limit=limit, order_by=order_by),
                reply_type=StoreRows)
        except ServiceError as e:
            body = service_error_body(e)
            body.actor = "feedback"
            raise HttpError(status_for(e), body) from None
        return reply

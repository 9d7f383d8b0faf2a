"""Reading `osiris.store.query` past one page: replies are capped by rows and by bytes.

The feedback actor answers one page per request (at most `limit` rows and never more than
the NATS server's `max_payload`) with a `next_cursor`; these helpers follow the cursors::

    async for row in iter_rows(bus, StoreQuery(table="feedback")):
        ...
    rows = await read_rows(bus, StoreQuery(table="proposals", filter=f), max_rows=5000)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import msgspec

from osiris_contracts.messages import StoreQuery, StoreRows
from osiris_contracts.subjects import STORE_QUERY
from osiris_core.subjects import Subject

__all__ = ["PAGE_ROWS", "Requester", "iter_pages", "iter_rows", "read_rows"]

PAGE_ROWS = 1000
"""A page size every feedback actor accepts (its `max_query_rows` is 10,000 by default)."""


class Requester(Protocol):
    """Anything that sends a request and decodes the reply: a `Bus`, or an `Actor`."""

    def request(self, subject: Subject | str, payload: Any = ..., *,
                reply_type: type[StoreRows], timeout: float = ...) -> Awaitable[StoreRows]: ...


async def iter_pages(via: Requester, query: StoreQuery, *, max_rows: int | None = None,
                     timeout: float = 30.0) -> AsyncIterator[StoreRows]:
    """Each page of `query`, from `query.cursor` on, until the rows end or `max_rows` rows
    were yielded (None: no bound). Each request asks for at most `query.limit` rows."""
    left = max_rows
    q = msgspec.structs.replace(query, paged=True)
    while left is None or left > 0:
        if left is not None and left < q.limit:
            q = msgspec.structs.replace(q, limit=left)
        page: StoreRows = await via.request(STORE_QUERY, q, reply_type=StoreRows,
                                            timeout=timeout)
        if left is not None:
            left -= len(page.rows)
        yield page
        if page.next_cursor is None or not page.rows:
            return
        q = msgspec.structs.replace(q, cursor=page.next_cursor)


async def iter_rows(via: Requester, query: StoreQuery, *, max_rows: int | None = None,
                    timeout: float = 30.0) -> AsyncIterator[dict[str, Any]]:
    """Every row of `query` (at most `max_rows`), page by page."""
    async for page in iter_pages(via, query, max_rows=max_rows, timeout=timeout):
        for row in page.rows:
            yield row


async def read_rows(via: Requester, query: StoreQuery, *, max_rows: int | None = None,
                    timeout: float = 30.0) -> list[dict[str, Any]]:
    """All rows of `query` (at most `max_rows`) in one list."""
    return [row async for row in iter_rows(via, query, max_rows=max_rows, timeout=timeout)]

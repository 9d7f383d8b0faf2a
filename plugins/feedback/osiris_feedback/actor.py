"""The feedback actor: durable feedback intake, the single writer of the LanceDB tables, and
`osiris.store.query` for everyone else."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from osiris_contracts import tables
from osiris_contracts.messages import (
    Advice,
    DgmEvent,
    FeedbackAck,
    FeedbackItem,
    ProposalAssessed,
    ProposalCreated,
    RunRecord,
    StoreQuery,
    StoreRows,
    now_iso,
)
from osiris_contracts.subjects import (
    ADVICE_GENERATED,
    DGM_EVENTS,
    FEEDBACK_SUBMIT,
    FEEDBACK_SUBMITTED,
    PROPOSAL_ASSESSED,
    PROPOSAL_CREATED,
    RUNS_COMPLETED,
    STORE_QUERY,
)
from osiris_core import (
    Actor,
    BadRequest,
    EventMeta,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unavailable,
    on_event,
    reply_budget,
    service,
)
from osiris_core.protocol import DeadLetter
from osiris_core.subjects import DEADLETTER

from .config import FeedbackConfig
from .store import (
    SCHEMAS,
    FilterError,
    Page,
    Store,
    advice_row,
    deadletter_row,
    dgm_row,
    feedback_row,
    proposal_assessed_row,
    proposal_created_row,
    run_row,
)

KNOWN_HEADER = "Osiris-Transaction-Known"
RECEIVED = "Feedback received successfully"
MAX_TEXT = 64


class FeedbackActor(Actor[FeedbackConfig]):
    name = "feedback"
    description = "durable feedback intake; LanceDB tables feedback, proposals, runs, advice, dgm_archive"

    async def on_start(self) -> None:
        path = Path(self.ctx.data_dir) / self.config.db_dir
        self.store = await asyncio.to_thread(Store, path,
                                             cache_bytes=self.config.cache_mb << 20)
        self.locks = {name: asyncio.Lock() for name in SCHEMAS}
        self.known: set[str] = await asyncio.to_thread(self.store.ids, "proposals")
        self.written = {name: 0 for name in SCHEMAS}
        self.unknown_feedback = 0
        self.last_optimize: float | None = None
        if self.config.optimize_every_s > 0:
            self.spawn(self._optimize_loop(), "optimize")

    # --- intake -------------------------------------------------------------------------
    @service(FEEDBACK_SUBMIT)
    async def submit(self, item: FeedbackItem) -> FeedbackAck:
        """Publish the item to JetStream (Nats-Msg-Id = feedback_id) and reply once it is
        stored there: an ack means durable. Tables are written by the consumer below."""
        if not item.transaction_id.strip():
            raise BadRequest("transaction_id must not be empty", field="transaction_id")
        if not item.feedback_type.strip() or len(item.feedback_type) > MAX_TEXT:
            raise BadRequest(f"feedback_type must be 1–{MAX_TEXT} characters "
                             "(e.g. correction, rating, qualitative_comment)",
                             field="feedback_type")
        if item.feedback_id is not None and not 0 < len(item.feedback_id) <= 128:
            raise BadRequest("feedback_id must be 1–128 characters", field="feedback_id")
        if item.timestamp is not None:
            try:
                datetime.fromisoformat(item.timestamp.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(f"timestamp {item.timestamp!r} is not ISO 8601",
                                 field="timestamp") from None
        known = item.transaction_id in self.known
        if not known and self.config.unknown_transaction == "reject":
            raise NotFound(f"unknown transaction_id {item.transaction_id!r}: no stored proposal "
                           "has it", field="transaction_id")
        fid = item.feedback_id or uuid.uuid4().hex
        stored = msgspec.structs.replace(item, feedback_id=fid,
                                         timestamp=item.timestamp or now_iso())
        try:
            fresh = await self.publish(FEEDBACK_SUBMITTED, stored, msg_id=fid,
                                       headers={KNOWN_HEADER: "1" if known else "0"})
        except Exception as e:  # noqa: BLE001 - no ack unless JetStream has it
            raise Unavailable(f"feedback not stored (JetStream did not confirm): {e!r}") from None
        message = RECEIVED if fresh else f"{RECEIVED} (already received: {fid})"
        if not known:
            self.unknown_feedback += 1
            message += "; transaction_id matches no stored proposal: kept unlinked"
        return FeedbackAck(message=message, transaction_id=item.transaction_id,
                           feedback_id=fid, transaction_known=known)

    # --- durable consumers: the single writer of each table -----------------------------
    async def _write(self, table: str, fn: Callable[..., int], rows: list[dict[str, Any]]) -> None:
        async with self.locks[table]:
            await asyncio.to_thread(fn, table, rows)
        self.written[table] += len(rows)

    @on_event(FEEDBACK_SUBMITTED, batch=256)
    async def store_feedback(self, items: list[tuple[FeedbackItem, EventMeta]]) -> None:
        rows = [feedback_row(item, meta.msg_id, meta.headers.get(KNOWN_HEADER, "1") != "0")
                for item, meta in items]
        await self._write(tables.FEEDBACK, self.store.insert_absent, rows)

    @on_event(PROPOSAL_CREATED, batch=256)
    async def store_created(self, items: list[tuple[ProposalCreated, EventMeta]]) -> None:
        await self._write(tables.PROPOSALS, self.store.merge_into,
                          [proposal_created_row(e) for e, _ in items])
        self.known.update(e.transaction_id for e, _ in items)

    @on_event(PROPOSAL_ASSESSED, batch=256)
    async def store_assessed(self, items: list[tuple[ProposalAssessed, EventMeta]]) -> None:
        await self._write(tables.PROPOSALS, self.store.merge_into,
                          [proposal_assessed_row(e) for e, _ in items])
        self.known.update(e.transaction_id for e, _ in items)

    @on_event(RUNS_COMPLETED, batch=256)
    async def store_runs(self, items: list[tuple[RunRecord, EventMeta]]) -> None:
        await self._write(tables.RUNS, self.store.insert_absent,
                          [run_row(r) for r, _ in items])

    @on_event(ADVICE_GENERATED, batch=256)
    async def store_advice(self, items: list[tuple[Advice, EventMeta]]) -> None:
        await self._write(tables.ADVICE, self.store.insert_absent, [advice_row(a) for a, _ in items])

    @on_event(DGM_EVENTS, batch=256)
    async def store_dgm(self, items: list[tuple[DgmEvent, EventMeta]]) -> None:
        await self._write(tables.DGM_ARCHIVE, self.store.upsert_latest, [dgm_row(e) for e, _ in items])

    @on_event(DEADLETTER, batch=64)
    async def store_deadletters(self, items: list[tuple[DeadLetter, EventMeta]]) -> None:
        """History of dead letters (`osiris deadletter list` reads the live set from the
        stream)."""
        await self._write(tables.DEADLETTER, self.store.insert_absent,
                          [deadletter_row(d) for d, _ in items])

    async def _optimize_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.optimize_every_s)
            for name in SCHEMAS:
                async with self.locks[name]:
                    tbl = self.store.tables.get(name)
                    if tbl is not None:
                        await asyncio.to_thread(tbl.optimize)
            self.last_optimize = time.time()

    # --- reads --------------------------------------------------------------------------
    @service(STORE_QUERY)
    async def query(self, q: StoreQuery) -> StoreRows:
        """One page: at most `limit` rows, and no more bytes than the server's max_payload
        allows (`reply_budget`); `next_cursor` says where the next page starts."""
        if q.table not in SCHEMAS:
            raise BadRequest(f"unknown table {q.table!r} (tables: {', '.join(SCHEMAS)})",
                             field="table")
        if not 1 <= q.limit <= self.config.max_query_rows:
            raise BadRequest(f"limit must be 1–{self.config.max_query_rows}", field="limit")
        max_payload = self.ctx.bus.nc.max_payload
        try:
            rows = await asyncio.to_thread(self._page, q, max_payload)
        except FilterError as e:
            raise BadRequest(f"bad {e.field} for table {q.table!r}: {e}", field=e.field) from None
        if rows.truncated and not (q.paged or q.cursor):
            n = len(rows.rows)
            raise PayloadTooLarge(
                f"the {q.limit:,} rows asked for from {q.table!r} do not fit in one reply "
                f"(the NATS server's max_payload is {max_payload:,} bytes; the first {n:,} "
                f"fit): ask for limit <= {n:,}, or page: send \"paged\": true and follow "
                "next_cursor (osiris_contracts.store.read_rows does)",
                field="limit", rows_that_fit=n, max_payload=max_payload)
        return rows

    def _page(self, q: StoreQuery, max_payload: int) -> StoreRows:
        page = self.store.query(q.table, q.filter, q.limit, q.order_by, q.descending, q.cursor)
        return fit_page(page, max_payload)

    def facts(self) -> dict[str, Any]:
        return {"db": str(self.store.path), "written": dict(self.written),
                "known_transactions": len(self.known),
                "unlinked_feedback": self.unknown_feedback,
                "last_optimize": self.last_optimize}


def fit_page(page: Page, max_payload: int) -> StoreRows:
    """The longest prefix of `page` whose encoded reply fits in `reply_budget(max_payload)`:
    rows are measured as the reply encodes them, with the cursor of the
    last one. A single row that does not fit is a 413 naming its size and the way out."""
    budget = reply_budget(max_payload)
    # the envelope with an empty cursor; +2 covers `null` (no cursor) against `""`
    size = len(msgspec.json.encode(StoreRows(table=page.table, rows=[], next_cursor=""))) + 2
    n = 0
    for i, row in enumerate(page.rows):
        size += len(msgspec.json.encode(row)) + (1 if i else 0)
        if size + len(page.cursor(i)) > budget:
            break
        n = i + 1
    if n == len(page.rows):
        return StoreRows(table=page.table, rows=page.rows, next_cursor=page.next_cursor())
    if n == 0:
        row_bytes = len(msgspec.json.encode(page.rows[0]))
        skip = page.cursor(0)  # holds the row's order_by value: left out if that is huge too
        raise ServiceError(
            f"row {page.keys[0][1]!r} of table {page.table!r} is {row_bytes} bytes as JSON, "
            f"more than one reply may carry ({budget} bytes: the NATS server's max_payload "
            f"{max_payload} less room for headers); raise max_payload in the "
            "nats-server config, or pass detail.next_cursor as cursor to skip the row",
            code=413, field="table", row_id=page.keys[0][1], row_bytes=row_bytes,
            max_bytes=budget, next_cursor=skip if len(skip) < budget // 2 else None)
    return StoreRows(table=page.table, rows=page.rows[:n], next_cursor=page.cursor(n - 1),
                     truncated=True)

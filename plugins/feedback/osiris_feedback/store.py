"""The LanceDB side: table schemas, event → row conversion, idempotent batched upserts, queries.

Synchronous on purpose (LanceDB's Python API is); the actor calls it from a worker thread,
one writer per table. `osiris db` uses the same class read-only.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lancedb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from osiris_contracts.messages import (
    Advice,
    DgmEvent,
    FeedbackItem,
    ProposalAssessed,
    ProposalCreated,
    RunRecord,
    now_iso,
)
from osiris_core.protocol import DeadLetter

__all__ = ["JSON_COLUMNS", "SCHEMAS", "FilterError", "Page", "Store", "check_filter"]

S, F, B, N = pa.string(), pa.float64(), pa.bool_(), pa.int64()
SCHEMAS: dict[str, pa.Schema] = {
    "feedback": pa.schema([
        ("id", S), ("transaction_id", S), ("feedback_type", S), ("feedback_content", S),
        ("corrected_proposal", S), ("timestamp", S), ("transaction_known", B), ("stored_at", S),
    ]),
    "proposals": pa.schema([
        ("id", S), ("transaction_id", S), ("timestamp", S), ("prompt", S), ("phi3_proposal", S),
        ("ticker", S), ("action", S), ("side", S), ("confidence", F),
        ("hermes_assessment", S), ("assessed_at", S), ("stored_at", S),
    ]),
    "orchestrator_runs": pa.schema([
        ("id", S), ("run_id", S), ("query", S), ("status", S), ("started", S), ("finished", S),
        ("timestamp", S), ("duration_ms", F), ("transaction_id", S), ("error", S), ("steps", S),
        ("stored_at", S),
    ]),
    "advice": pa.schema([
        ("id", S), ("transaction_id", S), ("timestamp", S), ("approved", B), ("reasons", S),
        ("phi3_proposal", S), ("stored_at", S),
    ]),
    "dgm_archive": pa.schema([
        ("id", S), ("parent", S), ("planner", S), ("diff", S), ("decision", S), ("reason", S),
        ("why", S), ("event", S), ("iteration", N), ("source_sha256", S), ("data_sha256", S),
        ("lint", S),
        ("reward_cheap", F), ("reward_full", F), ("sub_rewards", S), ("ci_low", F),
        ("ci_high", F), ("trades", N), ("violations", N), ("live", S), ("created", S),
        ("decided", S), ("timestamp", S), ("revision", N), ("stored_at", S),
    ]),
    "deadletter": pa.schema([
        ("id", S), ("subject", S), ("stream", S), ("stream_seq", N), ("consumer", S),
        ("actor", S), ("node", S), ("error", S), ("attempts", N), ("payload", S),
        ("payload_encoding", S), ("headers", S), ("msg_id", S), ("timestamp", S),
        ("stored_at", S),
    ]),
}
JSON_COLUMNS = frozenset({"feedback_content", "corrected_proposal", "phi3_proposal", "steps",
                          "reasons", "lint", "sub_rewards", "live", "headers"})
DEFAULT_ORDER = "timestamp"

_enc = msgspec.json.Encoder()


def _json(value: Any) -> str | None:
    return None if value is None else _enc.encode(value).decode()


# --- event → row --------------------------------------------------------------------------
def feedback_row(item: FeedbackItem, msg_id: str, known: bool) -> dict[str, Any]:
    return {"id": item.feedback_id or msg_id, "transaction_id": item.transaction_id,
            "feedback_type": item.feedback_type, "feedback_content": _json(item.feedback_content),
            "corrected_proposal": _json(item.corrected_proposal),
            "timestamp": item.timestamp or now_iso(), "transaction_known": known,
            "stored_at": now_iso()}


def proposal_created_row(evt: ProposalCreated) -> dict[str, Any]:
    p = evt.phi3_proposal
    return {"id": evt.transaction_id, "transaction_id": evt.transaction_id,
            "timestamp": evt.timestamp, "prompt": evt.prompt, "phi3_proposal": _json(p),
            "ticker": p.ticker, "action": p.action, "side": p.side, "confidence": p.confidence}


def proposal_assessed_row(evt: ProposalAssessed) -> dict[str, Any]:
    p = evt.phi3_proposal
    return {"id": evt.transaction_id, "transaction_id": evt.transaction_id,
            "phi3_proposal": _json(p), "ticker": p.ticker,
            "action": p.action, "side": p.side, "confidence": p.confidence,
            "hermes_assessment": evt.hermes_assessment, "assessed_at": evt.timestamp}


def run_row(rec: RunRecord) -> dict[str, Any]:
    return {"id": rec.run_id, "run_id": rec.run_id, "query": rec.query, "status": rec.status,
            "started": rec.started, "finished": rec.finished, "timestamp": rec.finished,
            "duration_ms": sum(s.duration_ms for s in rec.steps),
            "transaction_id": rec.transaction_id, "error": rec.error, "steps": _json(rec.steps),
            "stored_at": now_iso()}


def advice_row(adv: Advice) -> dict[str, Any]:
    return {"id": adv.transaction_id, "transaction_id": adv.transaction_id,
            "timestamp": adv.timestamp, "approved": adv.approved, "reasons": _json(adv.reasons),
            "phi3_proposal": _json(adv.phi3_proposal), "stored_at": now_iso()}


def dgm_row(evt: DgmEvent) -> dict[str, Any]:
    v = evt.variant
    return {"id": v.id, "parent": v.parent, "planner": v.planner, "diff": v.diff,
            "decision": v.decision, "reason": v.reason, "why": v.why, "event": evt.kind,
            "iteration": v.iteration, "source_sha256": v.source_sha256,
            "data_sha256": v.data_sha256, "lint": _json(v.lint), "reward_cheap": v.reward_cheap,
            "reward_full": v.reward_full, "sub_rewards": _json(v.sub_rewards),
            "ci_low": v.ci_low, "ci_high": v.ci_high, "trades": v.trades,
            "violations": v.violations, "live": _json(v.live), "created": v.created,
            "decided": v.decided, "timestamp": evt.timestamp, "revision": v.revision,
            "stored_at": now_iso()}


def deadletter_row(dl: DeadLetter) -> dict[str, Any]:
    return {"id": dl.id, "subject": dl.subject, "stream": dl.stream,
            "stream_seq": dl.stream_seq, "consumer": dl.consumer, "actor": dl.actor,
            "node": dl.node, "error": dl.error, "attempts": dl.attempts, "payload": dl.payload,
            "payload_encoding": dl.payload_encoding, "headers": _json(dl.headers),
            "msg_id": dl.msg_id,
            "timestamp": datetime.fromtimestamp(dl.ts or time.time(), UTC).isoformat(),
            "stored_at": now_iso()}


# --- filters ------------------------------------------------------------------------------
class FilterError(ValueError):
    """A query part that cannot run; `.args[0]` says what is wrong, `.field` which request
    field (filter, order_by, cursor) it is."""

    def __init__(self, message: str, *, field: str = "filter") -> None:
        super().__init__(message)
        self.field = field


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<op><=|>=|!=|<>|=|<|>|\(|\)|,)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<bad>\S)
    )""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "like", "true", "false", "between"}


def check_filter(table: str, expr: str) -> None:
    """Accept only comparisons of this table's columns with literals (SQL-ish, as LanceDB
    takes them). Raises FilterError naming the unknown column or the offending text."""
    columns = set(SCHEMAS[table].names)
    if len(expr) > 2000:
        raise FilterError("filter is longer than 2000 characters")
    pos, depth = 0, 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        if m.group("bad"):
            raise FilterError(f"unexpected {m.group('bad')!r} at position {m.start('bad')}")
        word = m.group("word")
        if word and word.lower() not in _KEYWORDS and word not in columns:
            raise FilterError(f"unknown column {word!r} in table {table!r} "
                              f"(columns: {', '.join(SCHEMAS[table].names)})")
        op = m.group("op")
        if op == "(":
            depth += 1
        elif op == ")":
            depth -= 1
            if depth < 0:
                raise FilterError(f"unbalanced ')' at position {m.start('op')}")
    if depth:
        raise FilterError("unbalanced '('")


# --- the store ----------------------------------------------------------------------------
DEFAULT_CACHE_BYTES = 16 << 20
"""Each of LanceDB's index and metadata caches (`[plugins.feedback].cache_mb`)."""


class Store:
    """The four tables in one LanceDB directory."""

    def __init__(self, path: Path, *, create: bool = True,
                 cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.path = path
        if create:
            path.mkdir(parents=True, exist_ok=True)
        # LanceDB's default caches (1 GiB of metadata, 6 GiB of index) keep every version's
        # manifest of a table written a few rows at a time: ~40-80 KiB per commit, for ever
        # in practice. Bounded here, memory levels off (a soak run grew 46 MiB/min without).
        session = lancedb.Session(index_cache_size_bytes=cache_bytes,
                                  metadata_cache_size_bytes=cache_bytes)
        self.db = lancedb.connect(str(path), session=session)
        self.tables: dict[str, Any] = {}
        existing = set(self.db.list_tables().tables) if path.exists() else set()
        for name, schema in SCHEMAS.items():
            if name in existing:
                self.tables[name] = tbl = self.db.open_table(name)
                # a column added to SCHEMAS since the table was made (e.g. dgm_archive.why):
                # added empty, so an older data_dir keeps working
                missing = [f for f in schema if f.name not in tbl.schema.names]
                if missing and create:  # the writer migrates; a reader takes what is there
                    tbl.add_columns(missing)
            elif create:
                self.tables[name] = self.db.create_table(name, schema=schema, exist_ok=True)

    def insert_absent(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert rows whose id is not stored yet (a redelivered event changes nothing)."""
        rows = _dedupe(rows)
        if not rows:
            return 0
        data = pa.Table.from_pylist(_complete(table, rows), schema=SCHEMAS[table])
        res = self.tables[table].merge_insert("id").when_not_matched_insert_all().execute(data)
        return int(res.num_inserted_rows)

    def merge_into(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Fill in columns of existing rows (e.g. a proposal's assessment), insert the rest.

        Values already stored win over None, so events may arrive in any order, any number
        of times, and the row converges to the same content.
        """
        rows = _dedupe(rows, merge=True)
        if not rows:
            return 0
        tbl = self.tables[table]
        ids = ", ".join(_quote(r["id"]) for r in rows)
        existing = {r["id"]: r for r in tbl.search().where(f"id IN ({ids})").limit(None)
                    .to_arrow().to_pylist()}
        merged = []
        for r in rows:
            old = existing.get(r["id"], {})
            new = {k: (v if v is not None else old.get(k)) for k, v in _complete(table, [r])[0].items()}
            new["stored_at"] = old.get("stored_at") or now_iso()
            new["timestamp"] = new.get("timestamp") or new.get("assessed_at")
            if old and all(new.get(k) == old.get(k) for k in new):
                continue
            merged.append(new)
        if not merged:
            return 0
        data = pa.Table.from_pylist(merged, schema=SCHEMAS[table])
        (tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .execute(data))
        return len(merged)

    def upsert_latest(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Insert or replace rows by id, keeping the highest `revision` (events may be
        redelivered or arrive out of order; the record converges to its newest state)."""
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["id"] not in latest or r["revision"] > latest[r["id"]]["revision"]:
                latest[r["id"]] = r
        if not latest:
            return 0
        tbl = self.tables[table]
        ids = ", ".join(_quote(i) for i in latest)
        stored = {r["id"]: r["revision"] for r in tbl.search().where(f"id IN ({ids})")
                  .select(["id", "revision"]).limit(None).to_arrow().to_pylist()}
        fresh = [r for r in latest.values() if r["revision"] > (stored.get(r["id"]) or -1)]
        if not fresh:
            return 0
        data = pa.Table.from_pylist(_complete(table, fresh), schema=SCHEMAS[table])
        (tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all()
         .execute(data))
        return len(fresh)

    def ids(self, table: str) -> set[str]:
        tbl = self.tables.get(table)
        if tbl is None:
            return set()
        return set(tbl.to_arrow().column("id").to_pylist())

    def count(self, table: str) -> int:
        tbl = self.tables.get(table)
        return int(tbl.count_rows()) if tbl is not None else 0

    def optimize(self) -> None:
        for tbl in self.tables.values():
            tbl.optimize()

    def fragments(self, table: str) -> int:
        tbl = self.tables.get(table)
        return int(tbl.stats()["fragment_stats"]["num_fragments"]) if tbl is not None else 0

    def query(self, table: str, filter: str | None, limit: int, order_by: str | None,
              descending: bool, cursor: str | None = None) -> Page:
        """Rows of `table` matching `filter` in (order_by, id) order, after `cursor`, at most
        `limit`, JSON columns decoded.

        Raises KeyError (unknown table), FilterError (bad filter, order column or cursor).
        """
        if table not in SCHEMAS:
            raise KeyError(table)
        order = order_by or DEFAULT_ORDER
        if order not in SCHEMAS[table].names:
            raise FilterError(f"unknown order_by column {order!r} in table {table!r}",
                              field="order_by")
        if filter:
            check_filter(table, filter)
        after = _decode_cursor(cursor, table, order, descending) if cursor else None
        tbl = self.tables.get(table)
        if tbl is None:
            return Page(table, order, descending, [], [], more=False)
        try:
            data = tbl.search().where(filter).limit(None).to_arrow() if filter else tbl.to_arrow()
        except (ValueError, RuntimeError) as e:
            raise FilterError(str(e).splitlines()[0]) from None
        if after is not None:
            data = data.filter(_after(data, order, descending, *after))
        way = "descending" if descending else "ascending"
        # arrow puts nulls last either way (its default); `_after` relies on that
        data = data.take(pc.sort_indices(data, sort_keys=[(order, way), ("id", way)]))
        page = data.slice(0, limit)
        keys = list(zip(page.column(order).to_pylist(), page.column("id").to_pylist(),
                        strict=True))
        return Page(table, order, descending, [_decode(r) for r in page.to_pylist()], keys,
                    more=data.num_rows > limit)


@dataclass
class Page:
    """One page of a query: decoded rows, and the raw (order value, id) key of each, from
    which `cursor(i)` makes the position just after row i."""

    table: str
    order: str
    descending: bool
    rows: list[dict[str, Any]]
    keys: list[tuple[Any, str]]
    more: bool
    """Rows follow the last one of this page."""

    def cursor(self, i: int) -> str:
        value, id_ = self.keys[i]
        raw = msgspec.json.encode([CURSOR_VERSION, self.table, self.order, self.descending, value, id_])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def next_cursor(self) -> str | None:
        """Where the next page starts when this one is sent whole (None: the end)."""
        return self.cursor(len(self.rows) - 1) if self.more and self.rows else None


CURSOR_VERSION = 1


def _decode_cursor(cursor: str, table: str, order: str, descending: bool) -> tuple[Any, str]:
    """(order value, id) of the row a cursor points after; FilterError if it is not one of
    ours or was made for another table or ordering."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, c_table, c_order, c_desc, value, id_ = msgspec.json.decode(raw)
    except (ValueError, TypeError, msgspec.DecodeError):
        raise FilterError("cursor is not a next_cursor of osiris.store.query "
                          "(pass it back unchanged)", field="cursor") from None
    if version != CURSOR_VERSION or not isinstance(id_, str):
        raise FilterError("cursor is not a next_cursor of osiris.store.query "
                          "(pass it back unchanged)", field="cursor")
    if (c_table, c_order, c_desc) != (table, order, descending):
        def way(desc: bool) -> str:
            return "descending" if desc else "ascending"

        raise FilterError(f"the cursor pages {c_table!r} by {c_order} {way(c_desc)}, not "
                          f"{table!r} by {order} {way(descending)}: send the table, order_by "
                          "and descending of the page it came from, or no cursor to start "
                          "again", field="cursor")
    return value, id_


def _after(data: pa.Table, order: str, descending: bool, value: Any, id_: str) -> pa.Array:
    """Mask of the rows after (value, id) in the query's order: (order, id) both ascending
    or both descending, null order values last."""
    beyond = pc.less if descending else pc.greater
    col, ids = data.column(order), data.column("id")
    is_null = pc.is_null(col)
    later_id = beyond(ids, pa.scalar(id_, pa.string()))
    if value is None:
        return pc.and_(is_null, later_id)
    try:
        v = pa.scalar(value, col.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        raise FilterError(f"cursor value does not fit column {order!r}", field="cursor") from None
    same = pc.and_(pc.fill_null(pc.equal(col, v), False), later_id)
    return pc.or_(pc.or_(pc.fill_null(beyond(col, v), False), same), is_null)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _complete(table: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    names = SCHEMAS[table].names
    return [{n: r.get(n) for n in names} for r in rows]


def _dedupe(rows: list[dict[str, Any]], merge: bool = False) -> list[dict[str, Any]]:
    """One row per id within a batch (merge_insert needs unique source keys)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["id"] in out and merge:
            old = out[r["id"]]
            out[r["id"]] = {**old, **{k: v for k, v in r.items() if v is not None}}
        else:
            out.setdefault(r["id"], r)
    return list(out.values())


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for k in JSON_COLUMNS & row.keys():
        if isinstance(row[k], str):
            try:
                row[k] = json.loads(row[k])
            except json.JSONDecodeError:
                pass
    return row

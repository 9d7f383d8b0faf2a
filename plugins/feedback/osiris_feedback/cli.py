"""`osiris db query-runs | query-feedback | query TABLE`: through osiris.store.query when the
feedback actor is running, else straight from the LanceDB folder (read-only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import msgspec

from osiris_contracts.messages import StoreQuery
from osiris_contracts.store import PAGE_ROWS, read_rows
from osiris_contracts.subjects import STORE_QUERY
from osiris_core.cli import config_option, get_config, run_with_bus
from osiris_core.config import Config
from osiris_core.errors import ServiceError, Unavailable
from osiris_core.nats.bus import Bus, nats_reachable

from .config import FeedbackConfig
from .store import SCHEMAS, FilterError, Store

COLUMNS = {
    "orchestrator_runs": ["timestamp", "run_id", "status", "duration_ms", "transaction_id",
                          "error", "query"],
    "feedback": ["timestamp", "transaction_id", "feedback_type", "transaction_known",
                 "feedback_content"],
    "proposals": ["timestamp", "transaction_id", "ticker", "action", "side", "confidence",
                  "hermes_assessment"],
    "advice": ["timestamp", "transaction_id", "approved", "reasons"],
}


@click.group(name="db")
def db() -> None:
    """Read the LanceDB tables (feedback, proposals, orchestrator_runs, advice)."""


def fetch(config: Config, q: StoreQuery) -> tuple[list[dict[str, Any]], str]:
    """Up to `q.limit` rows and where they came from. Over the bus they are read page by
    page (a reply holds at most one NATS max_payload), so any limit works."""
    s = config.settings
    if nats_reachable(s.nats_url):
        async def go(bus: Bus) -> list[dict[str, Any]]:
            return await read_rows(bus, msgspec.structs.replace(q, limit=PAGE_ROWS),
                                   max_rows=q.limit)

        try:
            return run_with_bus(config, go, name="osiris-db"), f"{STORE_QUERY} on {s.nats_url}"
        except Unavailable:
            pass  # no feedback actor running: read the files
    cfg = config.plugin("feedback", FeedbackConfig)
    path = config.data_dir / cfg.db_dir
    if not path.exists():
        raise click.ClickException(f"no feedback store at {path} (is [osiris].data_dir right? "
                                   "use -c FILE to point at the osiris.toml of the system)")
    if q.table not in SCHEMAS:
        raise click.BadParameter(f"unknown table {q.table!r} (tables: {', '.join(SCHEMAS)})")
    try:
        rows = Store(Path(path), create=False).query(q.table, q.filter, q.limit, q.order_by,
                                                      q.descending).rows
    except FilterError as e:
        raise click.BadParameter(str(e), param_hint=f"--{e.field}") from None
    return rows, str(path)


def show(rows: list[dict[str, Any]], table: str, as_json: bool, source: str) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    cols = COLUMNS.get(table) or (list(rows[0]) if rows else [])
    click.echo(f"{len(rows)} row(s) of {table} from {source}", err=True)
    if not rows:
        return
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [min(max(len(c), *(len(row[i]) for row in cells)), 48) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v).replace("\n", " ")


def _query(config_path: str | None, table: str, limit: int, filter: str | None,
           order_by: str | None, ascending: bool, as_json: bool) -> None:
    config = get_config(config_path)
    q = StoreQuery(table=table, filter=filter, limit=limit, order_by=order_by,
                   descending=not ascending)
    try:
        rows, source = fetch(config, q)
    except ServiceError as e:
        raise click.ClickException(f"{e.code}: {e.message}") from None
    show(rows, table, as_json, source)


def _options(fn: Any) -> Any:
    for opt in reversed([
        click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
                     help="Rows to show (read page by page: any number works)."),
        click.option("--filter", "filter", default=None,
                     help="e.g. \"status = 'ok'\" (columns of the table, SQL-like)"),
        click.option("--order_by", "--order-by", "order_by", default=None,
                     help="Column to sort by (default: timestamp, newest first)."),
        click.option("--ascending", is_flag=True, help="Oldest first."),
        click.option("--json", "as_json", is_flag=True, help="Rows as JSON."),
        config_option,
    ]):
        fn = opt(fn)
    return fn


@db.command("query-runs")
@_options
def query_runs(config_path: str | None, limit: int, filter: str | None, order_by: str | None,
               ascending: bool, as_json: bool) -> None:
    """Recent orchestrator runs."""
    _query(config_path, "orchestrator_runs", limit, filter, order_by, ascending, as_json)


@db.command("query-feedback")
@_options
def query_feedback(config_path: str | None, limit: int, filter: str | None,
                   order_by: str | None, ascending: bool, as_json: bool) -> None:
    """Recent feedback items."""
    _query(config_path, "feedback", limit, filter, order_by, ascending, as_json)


@db.command("query")
@click.argument("table", type=click.Choice(sorted(SCHEMAS)))
@_options
def query_any(table: str, config_path: str | None, limit: int, filter: str | None,
              order_by: str | None, ascending: bool, as_json: bool) -> None:
    """Rows of any table: feedback, proposals, orchestrator_runs, advice."""
    _query(config_path, table, limit, filter, order_by, ascending, as_json)

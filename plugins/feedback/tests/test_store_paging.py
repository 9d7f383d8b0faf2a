"""osiris.store.query pages through a table bigger than a NATS message: on a nats-server with
its default 1 MiB max_payload (as an external server has), 8,000 feedback rows come back
page by page, each row exactly once, and `osiris db` shows any number of them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_feedback.store import Store

from osiris_contracts.messages import FeedbackAck, StoreQuery, StoreRows
from osiris_contracts.store import iter_pages, read_rows
from osiris_contracts.subjects import FEEDBACK_SUBMIT, STORE_QUERY
from osiris_core import BadRequest, Bus, Config, PayloadTooLarge, ServiceError
from osiris_core.nats.server import EmbeddedNats

N = 8000
DEFAULT_MAX_PAYLOAD = 1024 * 1024


@pytest.fixture
def default_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server with its own defaults: max_payload 1 MiB."""
    with EmbeddedNats(tmp_path / "nats", max_payload=None) as srv:
        yield srv.url


def feedback_rows(n: int) -> list[dict[str, Any]]:
    """~350 bytes a row as JSON (2.8 MB in all); timestamps repeat, so pages split ties and
    the id decides; a few rows have no timestamp (they sort last)."""
    return [{"id": f"f{i:05d}", "transaction_id": f"t{i % 97}", "feedback_type": "rating",
             "feedback_content": msgspec.json.encode({"stars": i % 5,
                                                      "comment": "c" * 150}).decode(),
             "timestamp": None if i % 1000 == 7 else f"2024-01-01T00:{i % 60:02d}:00+00:00",
             "transaction_known": False, "stored_at": "2024-01-02T00:00:00+00:00"}
            for i in range(n)]


async def stored(bus: Bus, filter: str, want: int, timeout: float = 20.0) -> None:
    """Until the feedback consumer has written `want` rows matching `filter`."""
    deadline = time.monotonic() + timeout
    while len(await read_rows(bus, StoreQuery(table="feedback", filter=filter))) < want:
        assert time.monotonic() < deadline, f"{want} rows matching {filter} not stored"
        await asyncio.sleep(0.05)


async def test_8000_rows_page_through_a_default_1mib_server_exactly_once(
        osiris_config: Callable[..., Config], osiris_runtime: Any, default_nats: str) -> None:
    cfg = osiris_config(plugins=["feedback"], nats=default_nats)
    store = Store(cfg.data_dir / "lancedb")  # before the actor starts: it is the writer after
    store.insert_absent("feedback", feedback_rows(N))
    store.insert_absent("advice", [{"id": "big", "transaction_id": "big",
                                    "reasons": msgspec.json.encode(["r" * 1_100_000]).decode()},
                                   {"id": "small", "transaction_id": "small"}])
    del store
    async with osiris_runtime(cfg) as rt:
        bus = rt.bus
        assert bus.nc.max_payload == DEFAULT_MAX_PAYLOAD

        # 20 reads of 10,000 rows by a client that reads one reply: 20 clear 413s saying how
        # many rows fit and how to page — never a crash, never a silently short answer
        for _ in range(20):
            with pytest.raises(PayloadTooLarge) as big:
                await bus.request(STORE_QUERY, {"table": "feedback", "limit": 10000})
            assert big.value.field == "limit" and '"paged": true' in big.value.message
            assert "max_payload is 1,048,576 bytes" in big.value.message
        fit = big.value.detail["rows_that_fit"] if big.value.detail else 0
        assert 0 < fit < N
        assert rt.cell("feedback").restarts == 0
        # asking for what fits works in one reply
        fits: StoreRows = await bus.request(STORE_QUERY, {"table": "feedback", "limit": fit},
                                            reply_type=StoreRows)
        assert len(fits.rows) == fit and not fits.truncated
        # a paging client asking for 10,000 rows: a full page and a cursor, not an error
        first: StoreRows = await bus.request(
            STORE_QUERY, {"table": "feedback", "limit": 10000, "paged": True},
            reply_type=StoreRows)
        size = len(msgspec.json.encode(first))
        print(f"first page: {len(first.rows)} rows, {size} bytes")
        assert 0 < len(first.rows) < N and first.truncated and first.next_cursor
        assert DEFAULT_MAX_PAYLOAD - 8192 < size <= DEFAULT_MAX_PAYLOAD

        # the whole table, page by page: every row exactly once, newest first, nulls last
        pages = [p async for p in iter_pages(bus, StoreQuery(table="feedback", limit=10000))]
        print("pages:", [(len(p.rows), len(msgspec.json.encode(p))) for p in pages])
        ids = [r["id"] for p in pages for r in p.rows]
        assert len(ids) == N
        assert len(pages) >= 3 and pages[-1].next_cursor is None and not pages[-1].truncated
        rows = feedback_rows(N)
        dated = sorted((r for r in rows if r["timestamp"]), reverse=True,
                       key=lambda r: (r["timestamp"], r["id"]))
        undated = sorted((r for r in rows if not r["timestamp"]), reverse=True,
                         key=lambda r: r["id"])
        assert ids == [r["id"] for r in dated + undated]
        assert pages[0].rows[0]["feedback_content"]["stars"] in range(5)  # JSON decoded

        # rows written while paging (ascending, before the cursor) shift nothing: each once
        seen: list[str] = []
        q = StoreQuery(table="feedback", order_by="timestamp", descending=False, limit=3000)
        async for page in iter_pages(bus, q):
            if not seen:
                for i in range(5):
                    await bus.request(FEEDBACK_SUBMIT, {
                        "transaction_id": "late", "feedback_type": "rating",
                        "feedback_id": f"late{i}", "timestamp": "2023-01-01T00:00:00+00:00"},
                        reply_type=FeedbackAck)
                await stored(bus, "transaction_id = 'late'", 5)
            seen += [r["id"] for r in page.rows]
        assert sorted(seen) == sorted(ids)

        # a filter pages the same way; read_rows stops at max_rows
        sub = await read_rows(bus, StoreQuery(table="feedback", filter="transaction_id = 't3'",
                                              limit=10))
        assert len(sub) == len([i for i in range(N) if i % 97 == 3])
        assert len(await read_rows(bus, StoreQuery(table="feedback", limit=10000),
                                   max_rows=4500)) == 4500

        # a cursor is for its own ordering only, and must be one of ours
        with pytest.raises(BadRequest) as e:
            await bus.request(STORE_QUERY, {"table": "feedback", "cursor": first.next_cursor,
                                            "descending": False})
        assert e.value.field == "cursor" and "ascending" in e.value.message
        with pytest.raises(BadRequest) as e:
            await bus.request(STORE_QUERY, {"table": "feedback", "cursor": "nonsense"})
        assert e.value.field == "cursor"

        # one row bigger than a message: 413 saying how big and what to do, and how to skip it
        with pytest.raises(ServiceError) as big:
            await bus.request(STORE_QUERY, {"table": "advice", "order_by": "id",
                                            "descending": False})
        err = big.value
        assert err.code == 413 and "'big'" in err.message and "max_payload" in err.message
        assert err.detail and err.detail["row_bytes"] > DEFAULT_MAX_PAYLOAD
        rest = await bus.request(STORE_QUERY, {"table": "advice", "order_by": "id",
                                               "descending": False,
                                               "cursor": err.detail["next_cursor"]},
                                 reply_type=StoreRows)
        assert [r["id"] for r in rest.rows] == ["small"] and rest.next_cursor is None
        assert rt.cell("feedback").state.value == "running"

        # osiris db shows any --limit, reading page by page over the bus
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", "from osiris_core.cli import main; main()",
                             "db", "query-feedback", "--limit", "9000", "-c", str(cfg.path)],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"{N + 5} row(s) of feedback from osiris.store.query" in out.stderr
        assert len(out.stdout.splitlines()) == N + 5 + 1  # the header line


def test_the_table_name_constants_are_the_stores_tables() -> None:
    from osiris_feedback.store import SCHEMAS

    from osiris_contracts import tables

    assert set(tables.ALL) == set(SCHEMAS)


def test_a_store_made_before_a_column_existed_gains_it_and_keeps_its_rows(tmp_path: Path) -> None:
    import lancedb
    import pyarrow as pa
    from osiris_feedback.store import SCHEMAS, dgm_row

    from osiris_contracts.messages import DgmEvent, DgmVariant

    old = pa.schema([f for f in SCHEMAS["dgm_archive"] if f.name != "why"])
    lancedb.connect(str(tmp_path)).create_table("dgm_archive", schema=old).add(
        [{"id": "0", "parent": None, "planner": "seed", "revision": 1}])
    store = Store(tmp_path)  # the writer: dgm_archive.why is added, empty
    evt = DgmEvent(kind="proposed", timestamp="t", variant=DgmVariant(
        id="1", parent="0", planner="llm", why="fewer weak trades", revision=1))
    assert store.upsert_latest("dgm_archive", [dgm_row(evt)]) == 1
    got = {r["id"]: r for r in store.tables["dgm_archive"].to_arrow().to_pylist()}
    assert got["0"]["planner"] == "seed" and got["0"]["why"] is None
    assert got["1"]["why"] == "fewer weak trades"

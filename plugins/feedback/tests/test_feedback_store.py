"""Feedback intake, the four LanceDB tables and osiris.store.query, on a real nats-server and
real LanceDB in a temp dir."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from osiris_contracts.messages import (
    Advice,
    FeedbackAck,
    ProposalAssessed,
    ProposalCreated,
    RunRecord,
    RunStep,
    StoreRows,
    TradeProposal,
)
from osiris_contracts.subjects import (
    ADVICE_GENERATED,
    FEEDBACK_SUBMIT,
    PROPOSAL_ASSESSED,
    PROPOSAL_CREATED,
    RUNS_COMPLETED,
    STORE_QUERY,
)
from osiris_core import BadRequest, Config, NotFound
from osiris_core.nats.bus import Bus

PROPOSAL = TradeProposal(ticker="XYZ", action="adjust", side="LONG", new_stop_pct=5.0,
                         new_target_pct=10.0, confidence=0.85, rationale="trend")


async def rows(bus: Bus, table: str, want: int, *, filter: str | None = None,
               timeout: float = 20.0) -> list[dict[str, Any]]:
    """Poll osiris.store.query until `want` rows match (the consumers write asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await bus.request(STORE_QUERY, {"table": table, "filter": filter, "limit": 10000},
                                reply_type=StoreRows)
        if len(got.rows) >= want or time.monotonic() > deadline:
            return got.rows
        await asyncio.sleep(0.05)


async def test_feedback_is_acked_stored_once_and_linked(
        osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str) -> None:
    cfg = osiris_config(plugins=["feedback"], nats=fresh_nats_url)
    async with osiris_runtime(cfg) as rt:
        bus = rt.bus
        await bus.publish(PROPOSAL_CREATED, ProposalCreated(
            transaction_id="t1", timestamp="2024-01-01T00:00:00+00:00", prompt="p",
            phi3_proposal=PROPOSAL), msg_id="t1")
        await rows(bus, "proposals", 1)
        item = {"transaction_id": "t1", "feedback_type": "correction",
                "feedback_content": {"comment": "Stop too tight."},
                "corrected_proposal": {**msgspec.to_builtins(PROPOSAL), "new_stop_pct": 5.5}}
        ack = await bus.request(FEEDBACK_SUBMIT, item, reply_type=FeedbackAck)
        assert ack.message == "Feedback received successfully" and ack.transaction_id == "t1"
        assert ack.transaction_known is True and ack.feedback_id
        # a client retrying with the id it got is deduplicated, in JetStream and in LanceDB
        again = await bus.request(FEEDBACK_SUBMIT, {**item, "feedback_id": ack.feedback_id},
                                  reply_type=FeedbackAck)
        assert "already received" in again.message
        # unknown transaction: kept, unlinked, and the ack says so
        odd = await bus.request(FEEDBACK_SUBMIT, {"transaction_id": "nope",
                                                  "feedback_type": "rating",
                                                  "feedback_content": 2},
                                reply_type=FeedbackAck)
        assert odd.transaction_known is False and "matches no stored proposal" in odd.message
        got = await rows(bus, "feedback", 2)
        await asyncio.sleep(0.5)
        got = await rows(bus, "feedback", 3, timeout=0)
        assert len(got) == 2
        by_tx = {r["transaction_id"]: r for r in got}
        assert by_tx["t1"]["corrected_proposal"]["new_stop_pct"] == 5.5
        assert by_tx["t1"]["feedback_content"] == {"comment": "Stop too tight."}
        assert by_tx["t1"]["timestamp"]  # set by the server
        assert by_tx["t1"]["transaction_known"] is True
        assert by_tx["nope"]["transaction_known"] is False
        # bad input: clear errors naming the field; the actor keeps serving
        with pytest.raises(BadRequest) as e:
            await bus.request(FEEDBACK_SUBMIT, {"transaction_id": "t1", "feedback_type": "x",
                                                "timestamp": "yesterday"})
        assert e.value.field == "timestamp"
        with pytest.raises(BadRequest) as e:
            await bus.request(FEEDBACK_SUBMIT, {"transaction_id": "t1", "feedbak_type": "x"})
        assert "feedbak_type" in e.value.message
        assert rt.cell("feedback").state.value == "running"


async def test_unknown_transactions_can_be_refused(
        osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str) -> None:
    cfg = osiris_config(plugins=["feedback"], nats=fresh_nats_url,
                        tables={"feedback": {"unknown_transaction": "reject"}})
    async with osiris_runtime(cfg) as rt:
        with pytest.raises(NotFound) as e:
            await rt.bus.request(FEEDBACK_SUBMIT, {"transaction_id": "ghost",
                                                   "feedback_type": "rating"})
        assert e.value.field == "transaction_id" and "ghost" in e.value.message


async def test_proposals_runs_advice_tables_are_idempotent_and_queryable(
        osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str) -> None:
    cfg = osiris_config(plugins=["feedback"], nats=fresh_nats_url,
                        tables={"feedback": {"optimize_every_s": 0.5}})
    async with osiris_runtime(cfg) as rt:
        bus = rt.bus
        ts = "2024-01-01T00:00:0{}+00:00"
        # assessed before created, both twice (a publisher retry with new msg ids)
        for n in range(2):
            await bus.publish(PROPOSAL_ASSESSED, ProposalAssessed(
                transaction_id="t9", timestamp=ts.format(2), phi3_proposal=PROPOSAL,
                hermes_assessment="looks fine"), msg_id=f"t9:assessed:{n}")
        for n in range(2):
            await bus.publish(PROPOSAL_CREATED, ProposalCreated(
                transaction_id="t9", timestamp=ts.format(1), prompt="the prompt",
                phi3_proposal=PROPOSAL), msg_id=f"t9:{n}")
        for i in range(5):
            rec = RunRecord(run_id=f"r{i}", query="q", status="ok" if i % 2 else "error",
                            started=ts.format(i), finished=ts.format(i),
                            steps=[RunStep(name="generate_proposal", status="ok",
                                           started=ts.format(i), duration_ms=12.5)],
                            error=None if i % 2 else "phi3 timed out")
            for n in range(2):
                await bus.publish(RUNS_COMPLETED, rec, msg_id=f"r{i}:{n}")
        await bus.publish(ADVICE_GENERATED, Advice(
            transaction_id="t9", timestamp=ts.format(3), approved=False,
            reasons=["stop 5.0% above max 4.0%"], phi3_proposal=PROPOSAL), msg_id="t9:advice")
        runs = await rows(bus, "orchestrator_runs", 5)
        advice = await rows(bus, "advice", 1)
        deadline = time.monotonic() + 20
        while True:
            prop = await rows(bus, "proposals", 1)
            if (prop and prop[0]["prompt"] and prop[0]["hermes_assessment"]) \
                    or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # duplicates would land by now
        assert len(await rows(bus, "orchestrator_runs", 6, timeout=0)) == 5
        assert len(await rows(bus, "proposals", 2, timeout=0)) == 1
        p = prop[0]
        assert (p["prompt"], p["hermes_assessment"], p["timestamp"]) == \
            ("the prompt", "looks fine", ts.format(1))
        assert p["phi3_proposal"]["ticker"] == "XYZ" and p["confidence"] == 0.85
        assert [r["run_id"] for r in runs] == ["r4", "r3", "r2", "r1", "r0"]  # newest first
        assert runs[0]["steps"][0]["duration_ms"] == 12.5
        assert advice[0]["approved"] is False and advice[0]["reasons"] == ["stop 5.0% above max 4.0%"]
        errs = await bus.request(STORE_QUERY, {"table": "orchestrator_runs",
                                               "filter": "status = 'error'", "order_by": "run_id",
                                               "descending": False}, reply_type=StoreRows)
        assert [r["run_id"] for r in errs.rows] == ["r0", "r2", "r4"]
        # bad queries: 400 naming what is wrong
        for q, field, text in [
            ({"table": "runs"}, "table", "unknown table 'runs'"),
            ({"table": "advice", "filter": "aproved = true"}, "filter", "unknown column 'aproved'"),
            ({"table": "advice", "filter": "approved = true; DROP"}, "filter", "unexpected ';'"),
            ({"table": "advice", "filter": "(approved = true"}, "filter", "unbalanced"),
            ({"table": "advice", "filter": "approved = = true"}, "filter", "bad filter"),
            ({"table": "advice", "order_by": "nope"}, "order_by", "unknown order_by column"),
            ({"table": "advice", "limit": 0}, "limit", "expected `int` >= 1"),
        ]:
            with pytest.raises(BadRequest) as e:
                await bus.request(STORE_QUERY, q)
            assert e.value.field == field and text in e.value.message, (q, e.value.message)
        await asyncio.sleep(1.0)  # let the periodic compaction run at least once
        facts = rt.cell("feedback").status().facts
        assert facts["last_optimize"] is not None and rt.cell("feedback").state.value == "running"
        # osiris db reads the same rows through the bus while the actor runs …
        out = await osiris_cli("db", "query-runs", "--json", "--limit", "2", "-c", str(cfg.path))
        assert out.returncode == 0, out.stderr
        assert [r["run_id"] for r in json.loads(out.stdout)] == ["r4", "r3"]
        assert "osiris.store.query" in out.stderr or out.stderr == ""
    # … and from the files when it does not
    out = await osiris_cli("db", "query-runs", "--filter", "status = 'error'", "-c", str(cfg.path))
    assert out.returncode == 0, out.stderr
    assert "3 row(s) of orchestrator_runs" in out.stderr and "phi3 timed out" in out.stdout
    assert Path(out.stderr.split(" from ")[1].strip()).name == "lancedb"
    out = await osiris_cli("db", "query-runs", "--filter", "stat = 1", "-c", str(cfg.path))
    assert out.returncode != 0 and "unknown column 'stat'" in out.stderr


async def osiris_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", "from osiris_core.cli import main; main()", *args],
        capture_output=True, text=True, timeout=60)

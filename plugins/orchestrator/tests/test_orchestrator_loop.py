"""The policy loop end to end on a real nats-server, real LanceDB and the REAL hermes and
phi3 actors on the tiny models (built offline by the `tiny_models` fixture)."""

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
from osiris_orchestrator.config import OrchestratorConfig
from osiris_orchestrator.workflow import Workflow
from osiris_sim.csvdata import make_data

from osiris_contracts.messages import (
    Advice,
    FeedbackAck,
    MarketTick,
    ProposalAssessed,
    ProposalCreated,
    ProposeReply,
    RunRecord,
    StoreRows,
)
from osiris_contracts.subjects import FEEDBACK_SUBMIT, PROPOSALS_PROPOSE, STORE_QUERY
from osiris_core import BadRequest, Config
from osiris_core.nats.bus import Bus

PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}
MODELS = ["hermes", "phi3"]


def model_tables(tiny: Path) -> dict[str, dict[str, Any]]:
    return {"hermes": {"model": str(tiny / "hermes"), "device": "cpu"},
            "phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"}}


class Events:
    """Subscribes before the action, then waits for what is expected (no sleeps)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.got: dict[str, list[bytes]] = {}
        self.changed = asyncio.Event()
        self.subs: list[Any] = []

    async def watch(self, *subjects: str) -> Events:
        for s in subjects:
            self.got[s] = []

            async def cb(msg: Any, s: str = s) -> None:
                self.got[s].append(msg.data)
                self.changed.set()

            self.subs.append(await self.bus.nc.subscribe(s, cb=cb))
        await self.bus.nc.flush()
        return self

    async def wait(self, cond: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; got { {k: len(v) for k, v in self.got.items()} }")
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass

    def decoded(self, subject: str, tp: type[Any]) -> list[Any]:
        return [msgspec.json.decode(d, type=tp) for d in self.got[subject]]

    async def close(self) -> None:
        for s in self.subs:
            await s.unsubscribe()


async def table(bus: Bus, name: str, want: int, timeout: float = 30.0,
                **q: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = (await bus.request(STORE_QUERY, {"table": name, "limit": 1000, **q},
                                  reply_type=StoreRows)).rows
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


def osiris_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from osiris_core.cli import main; main()",
                           *args], capture_output=True, text=True, timeout=timeout)


async def test_demo_style_loop_sim_to_all_four_tables(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    csv = make_data(tmp_path / "market.csv", bars=300, seed=11)
    cfg = osiris_config(
        plugins=[*MODELS, "orchestrator", "feedback", "sim"], nats=fresh_nats_url,
        tables={**model_tables(tiny_models),
                # hourly bars at 36000x: ten ticks a second, looping, for as long as it takes
                "sim": {"csv": str(csv), "speed": "36000x", "loop": True},
                "orchestrator": {"ticks_per_proposal": 10, "risk": PERMISSIVE,
                                 "assess_max_length": 24, "max_length": 200}})
    async with osiris_runtime(cfg) as rt:
        ev = await Events(rt.bus).watch("phi3.proposal.created", "phi3.proposal.assessed",
                                        "advice.generated", "osiris.runs.completed")
        def ok_runs() -> list[RunRecord]:
            return [r for r in ev.decoded("osiris.runs.completed", RunRecord) if r.status == "ok"]

        await ev.wait(lambda: len(ok_runs()) >= 2)
        # only a run begun while the models were still loading may have failed (recorded)
        for r in ev.decoded("osiris.runs.completed", RunRecord):
            assert r.status == "ok" or "no actor is serving" in (r.error or ""), r
        runs = ok_runs()
        await ev.wait(lambda: len(ev.got["phi3.proposal.assessed"]) >= 2)
        created = ev.decoded("phi3.proposal.created", ProposalCreated)
        assessed = ev.decoded("phi3.proposal.assessed", ProposalAssessed)
        advice = ev.decoded("advice.generated", Advice)
        assert {a.transaction_id for a in assessed} <= {c.transaction_id for c in created}
        assert all(a.approved for a in advice) and all(a.hermes_assessment for a in assessed)
        assert "Market: SIM 10 bars" in created[0].prompt  # query_market summarised the buffer
        r0 = runs[0]
        assert [s.name for s in r0.steps] == ["query_market", "generate_proposal",
                                             "risk_management", "evaluate_proposal",
                                             "publish_events"]
        assert all(s.duration_ms >= 0 and s.status == "ok" for s in r0.steps)
        # feedback on one of the proposals completes the loop
        tid = created[0].transaction_id
        await table(rt.bus, "proposals", 1, filter=f"transaction_id = '{tid}'")
        ack = await rt.bus.request(FEEDBACK_SUBMIT, {
            "transaction_id": tid, "feedback_type": "correction",
            "feedback_content": {"comment": "Stop too tight."},
            "corrected_proposal": {**msgspec.to_builtins(created[0].phi3_proposal),
                                   "new_stop_pct": 5.5}}, reply_type=FeedbackAck)
        assert ack.transaction_known is True
        for name in ("orchestrator_runs", "proposals", "advice", "feedback"):
            assert await table(rt.bus, name, 1), name
        stored = await table(rt.bus, "proposals", 1, filter=f"transaction_id = '{tid}'")
        assert stored[0]["prompt"] == created[0].prompt
        status = rt.cell("orchestrator").status().facts
        assert status["ticks_received"] >= 20 and status["runs"]["ok"] >= 2
        await ev.close()
        out = await asyncio.to_thread(osiris_cli, "db", "query-runs", "--json", "-c",
                                      str(cfg.path))
        assert out.returncode == 0, out.stderr
        listed = {r["run_id"] for r in json.loads(out.stdout)}
        assert {r.run_id for r in runs} <= listed


async def test_rejection_malformed_ticks_timeouts_each_recorded_and_loop_goes_on(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str) -> None:
    cfg = osiris_config(
        plugins=[*MODELS, "orchestrator", "feedback"], nats=fresh_nats_url,
        tables={**model_tables(tiny_models),
                "hermes": {**model_tables(tiny_models)["hermes"], "request_wait_s": 0.3},
                "orchestrator": {"ticks_per_proposal": 3, "assess_max_length": 16,
                                 "risk": {"min_confidence": 2.0}}})  # nothing passes
    async with osiris_runtime(cfg) as rt:
        bus = rt.bus
        ev = await Events(bus).watch("osiris.runs.completed", "advice.generated",
                                     "phi3.proposal.assessed")
        good = MarketTick(timestamp="2024-01-01T00:00:00+00:00", open=1, high=2, low=0.5,
                          close=1.5, volume=10)
        await bus.nc.publish("market.ticks", b'{"timestamp": "x", "open": "cheap"}')
        await bus.nc.publish("market.ticks", b"not json")
        await bus.nc.publish("market.ticks", msgspec.json.encode(
            msgspec.structs.replace(good, high=0.1)))
        for _ in range(3):
            await bus.publish("market.ticks", good)
        await ev.wait(lambda: len(ev.got["osiris.runs.completed"]) >= 1)
        run = ev.decoded("osiris.runs.completed", RunRecord)[0]
        assert run.status == "rejected" and run.error is None
        skipped = [s for s in run.steps if s.name == "evaluate_proposal"][0]
        assert skipped.status == "skipped" and "confidence" in (skipped.error or "")
        adv = ev.decoded("advice.generated", Advice)[0]
        assert not adv.approved and any("below min 2" in r for r in adv.reasons)
        facts = rt.cell("orchestrator").status().facts
        assert facts["malformed_ticks"] == 3
        assert "inconsistent prices" in facts["last_malformed"]
        stored = await table(bus, "advice", 1)
        assert stored[0]["approved"] is False and stored[0]["reasons"] == adv.reasons

        # a timed-out model: the run ends with the step's error recorded, promptly
        tight = Workflow(bus, msgspec.convert({"phi3_timeout_s": 0.001}, OrchestratorConfig))
        res = await tight.run("q", [good])
        assert res.run.status == "error"
        assert res.run.error is not None and res.run.error.startswith("generate_proposal: no reply")
        assert [s.status for s in res.run.steps] == ["ok", "error"]
        # a model that is not running at all: 503 recorded, not a hang
        await bus.request("osiris.hermes.control", {"op": "pause"})
        ok_risk = msgspec.convert({"risk": PERMISSIVE, "hermes_timeout_s": 60,
                                   "assess_max_length": 16}, OrchestratorConfig)
        res = await Workflow(bus, ok_risk).run("q", [good])
        assert res.run.status == "error" and "evaluate_proposal" in (res.run.error or "")
        assert "paused" in (res.run.error or "")
        await bus.request("osiris.hermes.control", {"op": "resume"})
        # … and the loop keeps running: more ticks, another (rejected) run
        for _ in range(3):
            await bus.publish("market.ticks", good)
        await ev.wait(lambda: sum(1 for r in ev.decoded("osiris.runs.completed", RunRecord)
                                  if r.status == "rejected") >= 2)
        res = await Workflow(bus, ok_risk).run("q", [good])
        assert res.run.status == "ok" and res.hermes_assessment
        stored_runs = await table(bus, "orchestrator_runs", 5)
        assert {r["status"] for r in stored_runs} == {"ok", "rejected", "error"}
        assert any("no reply on osiris.phi3.generate" in (r["error"] or "") for r in stored_runs)
        await ev.close()


async def test_propose_service_and_orchestrate_cli_with_seed_flags(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    cfg = osiris_config(plugins=[*MODELS, "orchestrator", "feedback"], nats=fresh_nats_url,
                        tables={**model_tables(tiny_models),
                                "orchestrator": {"risk": PERMISSIVE, "assess_max_length": 16}})
    async with osiris_runtime(cfg) as rt:
        bus = rt.bus
        reply = await bus.request(PROPOSALS_PROPOSE, {"prompt": "Adjust my SPY position",
                                                      "max_length": 200},
                                  reply_type=ProposeReply, timeout=120)
        assert reply.transaction_id and reply.hermes_assessment
        rows = await table(bus, "proposals", 1,
                           filter=f"transaction_id = '{reply.transaction_id}' "
                                  "AND hermes_assessment IS NOT NULL")
        assert rows and rows[0]["hermes_assessment"] == reply.hermes_assessment
        with pytest.raises(BadRequest) as e:
            await bus.request(PROPOSALS_PROPOSE, {"prompt": " "})
        assert e.value.field == "prompt"

        # one shot: prints the run as JSON
        out = await asyncio.to_thread(osiris_cli, "orchestrate", "Should I tighten stops?",
                                      "--json", "-c", str(cfg.path))
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout)
        assert res["run"]["status"] == "ok" and res["phi3_proposal"]["ticker"]
        assert res["run"]["query"] == "Should I tighten stops?"

        # the seeds' flags: a run per N ticks from the named channel (fed by `osiris sim`)
        csv = make_data(tmp_path / "m.csv", bars=40, seed=3)

        def seed_style() -> subprocess.CompletedProcess[str]:
            return osiris_cli("orchestrate", "--market_channel", "alt.ticks",
                              "--ticks_per_proposal", "5", "--count", "1", "--json",
                              "-c", str(cfg.path))

        orch = asyncio.ensure_future(asyncio.to_thread(seed_style))
        deadline = time.monotonic() + 60
        while not orch.done() and time.monotonic() < deadline:
            sim = await asyncio.to_thread(osiris_cli, "sim", str(csv), "--speed", "max",
                                          "--channel", "alt.ticks", "-c", str(cfg.path))
            assert sim.returncode == 0, sim.stderr
            await asyncio.wait([orch], timeout=2.0)
        out = await orch
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout.splitlines()[-1])
        assert res["market"]["ticks"] == 5 and res["run"]["status"] == "ok"
        assert "5 ticks per run on NATS alt.ticks" in out.stderr

"""The dgm kernel's open holes (issue 23, item 5), on a real nats-server, real LanceDB and the
real phi3 / orchestrator / feedback actors on the tiny models: integrity canaries, a kernel
restart in the middle of a shadow phase."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_dgm.config import DgmConfig
from osiris_dgm.contracts import DGM_PLAN, PlanReply, PlanRequest, Variant
from osiris_dgm.diff import make_diff
from osiris_dgm.kernel import CanaryFailed, Kernel
from osiris_dgm.testing import trend_csv
from osiris_orchestrator.config import OrchestratorConfig
from osiris_orchestrator.contracts import (
    PolicyClearShadowOp,
    PolicyOp,
    PolicyShadowArgs,
    PolicyShadowOp,
)
from osiris_orchestrator.policy import default_source
from osiris_phi3.contracts import FewShotOp
from osiris_sim import DEMO_BARS, DEMO_SEED
from osiris_sim.csvdata import make_data

from osiris_contracts.subjects import FEEDBACK_SUBMIT, PHI3_GENERATE
from osiris_core import Config
from osiris_core.nats.bus import Bus
from osiris_core.protocol import ControlReply, StatusOp

PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}
SRC = default_source()


def models(tiny: Path) -> dict[str, dict[str, Any]]:
    return {"phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"}}


async def no_events(kind: str, v: Variant, message: str) -> None:
    return None


async def test_integrity_canaries_are_rejected_and_one_that_passes_stops_the_loop(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    csv = make_data(tmp_path / "market.csv", bars=400, seed=3)
    dgm = {"market_csv": str(csv), "lint": False, "shadow_decisions": 0,
           "monitor_max_pairs": 0, "canary_every": 2}
    cfg = osiris_config(
        plugins=["phi3", "orchestrator", "feedback", "dgm"], nats=fresh_nats_url,
        tables={**models(tiny_models), "orchestrator": {"risk": PERMISSIVE}, "dgm": dgm})
    async with osiris_runtime(cfg) as rt:
        # a normal run: every pinned canary is rejected, by the check meant to catch it
        res = await rt.bus.request("osiris.dgm.run", {"iterations": 3, "planner": "nop"},
                                   timeout=300)
        assert [v["decision"] for v in res["iterations"]] == ["noop"] * 3
        status: ControlReply = await rt.bus.control("dgm", StatusOp(), timeout=10)
        facts = status.status.facts
        print(json.dumps(facts["canaries"], indent=1))
        assert facts["canary_failed"] == ""
        got = facts["canaries"]
        assert set(got) == {"nan-stop", "size-above-one", "reward-file-patch", "harness-patch",
                            "pins-patch"}
        assert "new_stop_pct is not finite" in got["nan-stop"]
        assert "size 2 outside [0, 1]" in got["size-above-one"]
        assert "outside the allow-list" in got["reward-file-patch"]
        assert "escapes the policy folder" in got["harness-patch"]
        assert "escapes the policy folder" in got["pins-patch"]

        # one sandbox interpreter per variant: the cheap window and the full one share it
        before = facts["sandbox_runs"]
        res = await rt.bus.request("osiris.dgm.run", {"iterations": 1, "planner": "null"},
                                   timeout=300)
        v = res["iterations"][0]
        assert v["decision"] == "archived" and v["reward_cheap"] is not None, v
        status = await rt.bus.control("dgm", StatusOp(), timeout=10)
        assert status.status.facts["sandbox_runs"] == before + 1

        # a weakened check: a test-only canary the evaluation (rightly) accepts stands for a
        # check that no longer rejects what it must; the loop stops with the reason
        weak = tmp_path / "canaries.json"
        weak.write_text(json.dumps({"harmless": make_diff(SRC, SRC.replace(
            '"min_confidence": 0.0', '"min_confidence": 0.3'))}))
        data = tmp_path / "weak"
        kcfg = msgspec.convert({**dgm, "canaries_file": str(weak)}, DgmConfig)
        kernel = Kernel(kcfg, OrchestratorConfig(), data, rt.bus, no_events, csv)
        with pytest.raises(CanaryFailed, match="integrity canary extra:harmless was not rejected"):
            await kernel.iterate("nop")
        assert kernel.iteration == 0 and set(kernel.archive.variants) == {"0"}  # no step taken
        assert kernel.canaries["nan-stop"]  # the pinned ones still rejected
        # it stays stopped, across a restart too, until every canary is rejected again
        again = Kernel(kcfg, OrchestratorConfig(), data, rt.bus, no_events, csv)
        assert "extra:harmless" in again.facts()["canary_failed"]
        with pytest.raises(CanaryFailed):
            await again.iterate("nop")
        fixed = Kernel(msgspec.convert(dgm, DgmConfig), OrchestratorConfig(), data, rt.bus,
                       no_events, csv)
        v = await fixed.iterate("nop")
        assert v.decision == "noop" and fixed.canary_failed == ""



# --- a kernel restart in the middle of a shadow phase -------------------------------------


ALWAYS_LONG = make_diff(SRC, SRC.replace(
    '    p = dict(proposal)\n',
    '    p = dict(proposal)\n    p["side"] = "LONG"\n    p["new_stop_pct"] = 1.0\n'
    '    p["new_target_pct"] = 2.0\n', 1))


async def serve_planner(bus: Bus, diffs: dict[str, str]) -> Any:
    async def cb(msg: Any) -> None:
        req = msgspec.json.decode(msg.data, type=PlanRequest)
        await msg.respond(msgspec.json.encode(PlanReply(diff=diffs.get(req.planner, ""),
                                                        planner=req.planner, note="test")))

    sub = await bus.nc.subscribe(DGM_PLAN.name, cb=cb)
    await bus.nc.flush()
    return sub


async def orch_policy(bus: Bus) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins((await bus.control("orchestrator", PolicyOp())).result)
    return out


async def test_a_kernel_restarted_mid_shadow_finishes_the_phase(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    offline = trend_csv(tmp_path / "up.csv", 400, +0.004, seed=1)
    live = trend_csv(tmp_path / "live.csv", 2000, +0.004, seed=2)
    cfg = osiris_config(
        plugins=["phi3", "orchestrator", "feedback", "dgm", "sim"], nats=fresh_nats_url,
        tables={**models(tiny_models),
                "orchestrator": {"risk": PERMISSIVE, "ticks_per_proposal": 5,
                                 "trade_horizon_bars": 5, "assess_max_length": 8},
                "sim": {"csv": str(live), "speed": "36000x", "loop": True},
                "dgm": {"market_csv": str(offline), "serve_planners": False, "lint": False,
                        "shadow_decisions": 6, "monitor_max_pairs": 0,
                        "monitor_interval_s": 0.3}})
    data = Path(cfg.settings.data_dir)
    async with osiris_runtime(cfg, only=["phi3", "orchestrator", "feedback", "sim"]) as rt:
        planner = await serve_planner(rt.bus, {"always-long": ALWAYS_LONG})
        async with osiris_runtime(cfg, only=["dgm"]) as kernel_rt:
            res = await kernel_rt.bus.request("osiris.dgm.run", {"planner": "always-long"},
                                              timeout=300)
            v = res["iterations"][0]
            assert v["decision"] == "shadow", v
        # the kernel is gone mid-shadow; the orchestrator keeps deciding with both policies
        state = json.loads((data / "dgm" / "state.json").read_text())
        print("stopped in phase", state["phase"])
        assert state["phase"]["name"] == "shadow"
        assert (await orch_policy(rt.bus))["shadow"] == v["id"]
        await asyncio.sleep(2)
        async with osiris_runtime(cfg, only=["dgm"]) as kernel_rt:
            deadline = time.monotonic() + 120
            while True:
                pol = await orch_policy(rt.bus)
                record = json.loads((data / "dgm" / "variants" / v["id"] / "record.json")
                                    .read_text())
                if pol["live"] == v["id"] and pol["shadow"] is None and \
                        record["decision"] == "kept":
                    break
                assert time.monotonic() < deadline, (pol, record["decision"])
                await asyncio.sleep(0.3)
            facts = (await kernel_rt.bus.control("dgm", StatusOp())).status.facts
            assert facts["phase"]["name"] == "idle" and facts["phase"]["live"] == v["id"]
        await planner.unsubscribe()


SLOW = make_diff(SRC, SRC.replace("Answer with one JSON trade proposal.",
                                  "Answer with one JSON trade proposal, please.", 1))
"""New prompts everywhere: phi3 is asked again, so its evaluation takes seconds."""


async def test_a_restarted_kernel_leaves_no_shadow_or_variant_dangling(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    offline = trend_csv(tmp_path / "up.csv", 400, +0.004, seed=1)
    live = trend_csv(tmp_path / "live.csv", 2000, +0.004, seed=2)
    dgm = {"market_csv": str(offline), "serve_planners": False, "lint": False,
           "shadow_decisions": 6, "monitor_max_pairs": 0, "monitor_interval_s": 0.3}
    cfg = osiris_config(
        plugins=["phi3", "orchestrator", "feedback", "dgm", "sim"], nats=fresh_nats_url,
        tables={**models(tiny_models),
                "orchestrator": {"risk": PERMISSIVE, "ticks_per_proposal": 5,
                                 "trade_horizon_bars": 5, "assess_max_length": 8},
                "sim": {"csv": str(live), "speed": "36000x", "loop": True},
                "dgm": dgm})
    data = Path(cfg.settings.data_dir)

    def record(vid: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads((data / "dgm" / "variants" / vid / "record.json")
                                         .read_text())
        return out

    async with osiris_runtime(cfg, only=["phi3", "orchestrator", "feedback", "sim"]) as rt:
        planner = await serve_planner(rt.bus, {"always-long": ALWAYS_LONG, "slow": SLOW})
        async with osiris_runtime(cfg, only=["dgm"]) as kernel_rt:
            res = await kernel_rt.bus.request("osiris.dgm.run", {"planner": "always-long"},
                                              timeout=300)
            v = res["iterations"][0]
            assert v["decision"] == "shadow", v
        # stopped right after clearing the shadow (say, to reject it), before saving that:
        # the orchestrator has no shadow, the kernel's state still says "shadow"
        await rt.bus.control("orchestrator", PolicyClearShadowOp())
        assert json.loads((data / "dgm" / "state.json").read_text())["phase"]["name"] == "shadow"
        async with osiris_runtime(cfg, only=["dgm"]) as kernel_rt:
            # the candidate is not left "shadow": it goes to shadow again and the phase ends
            deadline = time.monotonic() + 120
            while True:
                pol = await orch_policy(rt.bus)
                if pol["live"] == v["id"] and pol["shadow"] is None and \
                        record(v["id"])["decision"] == "kept":
                    break
                assert time.monotonic() < deadline, (pol, record(v["id"])["decision"])
                await asyncio.sleep(0.3)

        # stopped (hard) in the middle of an iteration, once its variant is proposed
        proposed = asyncio.Event()

        async def on_event(kind: str, variant: Variant, message: str) -> None:
            if kind == "proposed":
                proposed.set()

        kernel = Kernel(msgspec.convert(dgm, DgmConfig), OrchestratorConfig(), data, rt.bus,
                        on_event, offline)
        run = asyncio.create_task(kernel.iterate("slow"))
        await asyncio.wait_for(proposed.wait(), 120)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        slow = max(int(k) for k in
                   (p.name for p in (data / "dgm" / "variants").iterdir()))
        assert record(str(slow))["decision"] == "pending"
        # stopped between asking the orchestrator for a shadow and saving the phase
        await rt.bus.control("orchestrator", PolicyShadowOp(
            args=PolicyShadowArgs(variant="77", source=SRC)))
        async with osiris_runtime(cfg, only=["dgm"]):
            deadline = time.monotonic() + 60
            while (await orch_policy(rt.bus))["shadow"] is not None or \
                    record(str(slow))["decision"] == "pending":
                assert time.monotonic() < deadline, (await orch_policy(rt.bus),
                                                     record(str(slow)))
                await asyncio.sleep(0.3)
            assert "interrupted" in record(str(slow))["reason"]
            assert (await orch_policy(rt.bus))["live"] == v["id"]
        await planner.unsubscribe()


# --- the reply cache key follows phi3's few-shot corrections ------------------------------
async def test_new_feedback_corrections_change_the_reply_cache_key(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    csv = make_data(tmp_path / "market.csv", bars=400, seed=3)
    cfg = osiris_config(
        plugins=["phi3", "orchestrator", "feedback", "dgm"], nats=fresh_nats_url,
        tables={**models(tiny_models), "orchestrator": {"risk": PERMISSIVE},
                "dgm": {"market_csv": str(csv), "lint": False, "shadow_decisions": 0,
                        "monitor_max_pairs": 0, "canary_every": 0}})
    data = Path(cfg.settings.data_dir)
    async with osiris_runtime(cfg) as rt:
        asked: list[str] = []

        async def on_generate(msg: Any) -> None:
            asked.append(msg.subject)

        await rt.bus.request("osiris.dgm.run", {"planner": "null"}, timeout=300)
        seed = json.loads((data / "dgm" / "variants" / "0" / "record.json").read_text())
        assert "|fs:" not in seed["model_key"]
        sub = await rt.bus.nc.subscribe(PHI3_GENERATE.name, cb=on_generate)
        await rt.bus.request("osiris.dgm.run", {"planner": "null"}, timeout=300)
        assert asked == []  # cached: the same corrections (none), the same replies

        # a correction: phi3 now prepends it, so its replies to the same prompts may differ
        proposal = {"ticker": "SIM", "action": "open", "side": "LONG", "new_stop_pct": 2.0,
                    "new_target_pct": 4.0, "confidence": 0.9, "rationale": "a correction"}
        await rt.bus.request(FEEDBACK_SUBMIT, {"transaction_id": "t1",
                                               "feedback_type": "correction",
                                               "feedback_content": {"comment": "wider stop"},
                                               "corrected_proposal": proposal})
        deadline = time.monotonic() + 30
        while not (await rt.bus.control("phi3", FewShotOp())).result.few_shot:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        res = await rt.bus.request("osiris.dgm.run", {"planner": "null"}, timeout=300)
        after = json.loads((data / "dgm" / "variants" / "0" / "record.json").read_text())
        print("model keys:", seed["model_key"], "→", after["model_key"], "phi3 asked",
              len(asked))
        assert "|fs:" in after["model_key"] and after["revision"] > seed["revision"]
        assert res["iterations"][0]["model_key"] == after["model_key"]
        assert asked  # phi3 was asked again, with its corrections
        await sub.unsubscribe()


# --- works where users run it: a market without hand work, one progress line ---------------
async def test_without_a_market_csv_the_kernel_takes_the_sims_seeded_series(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str) -> None:
    cfg = osiris_config(  # the shipped plugins' defaults: no market_csv, no demo run before
        plugins=["phi3", "orchestrator", "feedback", "dgm"], nats=fresh_nats_url,
        tables={**models(tiny_models), "orchestrator": {"risk": PERMISSIVE},
                "dgm": {"holdout_fraction": 0.1, "lint": False}})
    market = Path(cfg.settings.data_dir) / "market" / "sim.csv"
    assert not market.exists()
    async with osiris_runtime(cfg) as rt:
        res = await rt.bus.request("osiris.dgm.run", {"planner": "nop"}, timeout=300)
        assert res["iterations"][0]["decision"] == "noop" and res["seed_reward"] is not None
    expected = make_data(market.with_name("expected.csv"), bars=DEMO_BARS, seed=DEMO_SEED)
    assert market.read_bytes() == expected.read_bytes()  # the very series `osiris demo` writes

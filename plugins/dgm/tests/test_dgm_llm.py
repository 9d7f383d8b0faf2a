"""The `llm` planner on the REAL phi3 actor (tiny model) over a real nats-server: what phi3
samples under the parent's edit grammar always compiles, applies and lints; archived sources
are skipped until only `mutate` is left; and `osiris dgm --planner llm` gets variants to the
backtest."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from osiris_dgm.contracts import DGM_PLAN, PlanReply, PlanRequest
from osiris_dgm.diff import apply_patch
from osiris_dgm.edits import EditError, EditSpace
from osiris_dgm.lint import lint_scores
from osiris_dgm.planners import edit_prompt
from osiris_dgm.sandbox import Limits
from osiris_dgm.testing import all_checks_on
from osiris_orchestrator.policy import check_source, default_source, load_policy, sha256
from osiris_phi3.contracts import PHI3_GUIDED, GuidedReply, GuidedRequest
from osiris_sim.csvdata import make_data

from osiris_contracts.messages import TradeProposal
from osiris_core import Config

SRC = default_source()
ALL_ON = all_checks_on(SRC)
"""A parent with every check on (as in test_dgm_edits): scale and off on every key."""
PROPOSAL = TradeProposal(ticker="SIM", action="open", side="LONG", new_stop_pct=1.2,
                         new_target_pct=2.5, confidence=0.7, rationale="test")
PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}


def models(tiny: Path) -> dict[str, dict[str, Any]]:
    return {"phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"}}


def osiris_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from osiris_core.cli import main; main()",
                           *args], capture_output=True, text=True, timeout=timeout)
TRACES = {"parent_reward": -0.5, "parent_sub_rewards": [0.1, -0.2, 0.0, 0.3],
          "recent_edits": [{"edit": "set{lookback, 7}", "decision": "archived", "reward": -0.7,
                            "reason": "not shown better than parent 0"}]}


async def test_phi3_samples_only_edits_that_compile_apply_and_lint(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str) -> None:
    cfg = osiris_config(plugins=["phi3"], nats=fresh_nats_url, tables=models(tiny_models))
    limits = Limits(cpu_s=60, wall_s=120.0, memory_mb=1024)
    valid = total = 0
    children: dict[str, str] = {}
    async with osiris_runtime(cfg) as rt:
        for parent in (SRC, ALL_ON):
            space = EditSpace.from_source(parent)
            system, prompt = edit_prompt(space, TRACES)
            for seed, temperature in [(0, 0.0)] + [(s, 0.8) for s in range(8)]:
                reply = await rt.bus.request(
                    PHI3_GUIDED, GuidedRequest(prompt=prompt, system=system, seed=seed,
                                               guidance="lark_grammar", grammar=space.grammar(),
                                               max_length=96, temperature=temperature),
                    reply_type=GuidedReply, timeout=60)
                total += 1
                try:
                    edit = space.parse(reply.generated_text)
                except EditError as e:
                    print("INVALID", reply.finish_reason, repr(reply.generated_text), e)
                    continue
                valid += 1
                new, diff = space.diff(parent, edit)
                print(f"seed {seed} t={temperature}: {reply.generated_text!r} "
                      f"({reply.usage['prompt_tokens']} prompt tokens)")
                assert apply_patch({"policy.py": parent}, diff, ["policy.py"])["policy.py"] == new
                assert check_source(new) == []
                load_policy("v", new).decide(PROPOSAL, {"ticks": 0})
                children[new] = parent
        print(f"valid edits: {valid}/{total}; distinct sources {len(children)}")
        assert valid == total
        assert len(children) > 4  # sampling chose, not the grammar
    # stage 1 as the kernel runs it: no worse than the parent
    parents = {p: await lint_scores(p, limits) for p in (SRC, ALL_ON)}
    for new, parent in children.items():
        got = await lint_scores(new, limits)
        assert got["ruff_issues"] <= parents[parent]["ruff_issues"], (new, got)
        assert got["pylint"] >= parents[parent]["pylint"], (new, got)


async def test_the_llm_planner_skips_archived_sources_then_falls_back_to_mutate(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, caplog: pytest.LogCaptureFixture) -> None:
    cfg = osiris_config(plugins=["phi3", "orchestrator", "dgm"], nats=fresh_nats_url,
                        tables={**models(tiny_models), "orchestrator": {"risk": PERMISSIVE}})
    archived: list[str] = []
    notes: list[str] = []
    async with osiris_runtime(cfg) as rt:
        with caplog.at_level(logging.WARNING, logger="osiris.dgm"):
            for _ in range(5):
                plan = await rt.bus.request(
                    DGM_PLAN, PlanRequest(planner="llm", policy_source=SRC, seed=11,
                                          traces={**TRACES, "archive_sha256": archived}),
                    reply_type=PlanReply, timeout=120)
                notes.append(plan.note)
                new = apply_patch({"policy.py": SRC}, plan.diff, ["policy.py"])["policy.py"]
                assert check_source(new) == []
                if plan.note.startswith("mutate fallback"):
                    break
                assert sha256(new) not in archived  # novel
                archived.append(sha256(new))
    print("\n".join(notes))
    assert notes[0].endswith("tokens]") and "candidate 1/3, 0 duplicate" in notes[0]
    assert notes[-1].startswith("mutate fallback") and "already archived" in notes[-1]
    assert 2 <= len(notes) <= 4  # the same seed, so each call meets the earlier ones again
    assert any("fell back to mutate" in r.getMessage() for r in caplog.records)


async def test_osiris_dgm_with_the_llm_planner_gets_variants_to_the_backtest(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    csv = make_data(tmp_path / "market.csv", bars=400, seed=3)
    cfg = osiris_config(
        plugins=["phi3", "orchestrator", "feedback", "dgm"], nats=fresh_nats_url,
        tables={**models(tiny_models), "orchestrator": {"risk": PERMISSIVE},
                "dgm": {"market_csv": str(csv), "shadow_decisions": 0, "monitor_max_pairs": 0}})
    async with osiris_runtime(cfg):
        out = await asyncio.to_thread(osiris_cli, "dgm", "--iterations", "4", "--planner",
                                      "llm", "--json", "-c", str(cfg.path))
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout)
    for v in res["iterations"]:
        print(v["id"], v["decision"], v["reward_cheap"], v["reason"][:100])
    assert len(res["iterations"]) == 4
    for v in res["iterations"]:
        assert v["decision"] != "error", v["reason"]
        assert v["diff"] and v["source_sha256"], v  # an applied edit
        assert not v["reason"].startswith(("patch rejected", "static check", "stage 1")), v
    assert len({v["source_sha256"] for v in res["iterations"]}) == 4  # all novel
    assert any(v["reward_cheap"] is not None for v in res["iterations"])  # stage 2 reached

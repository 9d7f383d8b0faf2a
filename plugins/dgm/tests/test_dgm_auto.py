"""The `auto` planner (a bandit over planners, rewarded by each child's gain over its parent)
and the planners' reply cache: the bandit's math, its state kept across a kernel restart, and
a second run of the kernel with the same seed — the REAL phi3 on the tiny model over a real
nats-server — that gives the identical archive without asking phi3 anything; the llm
planner's why is kept with the variant and shown by `osiris dgm archive`."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from osiris_dgm.bandit import Bandit
from osiris_dgm.config import DgmConfig
from osiris_dgm.contracts import DGM_RUN, RunReply, RunRequest, Variant
from osiris_dgm.kernel import Kernel
from osiris_dgm.testing import archive_rows
from osiris_orchestrator.config import OrchestratorConfig
from osiris_phi3.contracts import PHI3_GUIDED
from osiris_sim.csvdata import make_data

from osiris_contracts.subjects import PHI3_GENERATE
from osiris_core import Config
from osiris_core.protocol import ControlReply, StatusOp

PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}


# --- the bandit's math --------------------------------------------------------------------
def play(b: Bandit, seed: int, steps: int, gains: Callable[[str, random.Random], float | None]
         ) -> list[str]:
    world = random.Random(seed + 1)
    chosen = []
    for i in range(steps):
        arm = b.choose(random.Random(f"auto/{seed}/{i}"))
        b.update(arm, gains(arm, world))
        chosen.append(arm)
    return chosen


def noisy(arm: str, world: random.Random) -> float | None:
    """mutate gains now and then; the others always fail (None) or lose to their parent."""
    if arm != "mutate":
        return None if world.random() < 0.5 else -0.3
    return world.choice([0.0, 0.0, 0.4, -0.2])


def test_the_same_seed_chooses_the_same_arms_and_another_seed_may_not() -> None:
    runs = [play(Bandit(["mutate", "llm"]), 5, 60, noisy) for _ in range(2)]
    assert runs[0] == runs[1]
    others = {tuple(play(Bandit(["mutate", "llm"]), s, 60, noisy)) for s in range(6)}
    assert len(others) > 1


def test_every_arm_is_tried_first_then_an_arm_that_always_fails_is_chosen_less() -> None:
    b = Bandit(["mutate", "llm", "llm_diff"])
    chosen = play(b, 3, 200, noisy)
    assert set(chosen[:3]) == {"mutate", "llm", "llm_diff"}
    # llm and llm_diff never gain (failures and losses count 0): mutate dominates
    assert chosen.count("mutate") > 0.6 * len(chosen), b.summary()
    assert chosen.count("llm") < chosen.count("mutate") / 3
    assert b.mean("llm") == 0.0 and b.mean("mutate") > 0.0
    # epsilon and the exploration bonus still try the failing arms now and then
    assert chosen[100:].count("llm") + chosen[100:].count("llm_diff") > 0


def sparse(arm: str, world: random.Random) -> float | None:
    """As mutate gained on the small model's market (bench/RESULTS.md, 2026-12-08): mostly
    nothing, now and then a few tenths, rarely a jump of several points; llm never gains."""
    if arm != "mutate":
        return None
    x = world.random()
    return 5.0 if x < 0.02 else world.uniform(0.05, 0.6) if x < 0.12 else 0.0


def test_an_arm_that_never_gains_is_chosen_less_when_the_other_gains_rarely_but_big() -> None:
    # dividing means by the largest single gain left them far below the exploration bonus:
    # the never-gaining arm was chosen ~42 % of 100 iterations, a round robin
    shares = sorted(play(Bandit(["mutate", "llm"]), s, 100, sparse).count("llm")
                    for s in range(40))
    assert shares[len(shares) // 2] < 30, shares


def test_a_loss_counts_as_nothing_never_below_a_failure() -> None:
    b = Bandit(["a", "b"], decay=1.0)
    assert b.update("a", -5.0) == 0.0 and b.update("b", None) == 0.0
    assert b.update("a", float("nan")) == 0.0
    assert b.mean("a") == b.mean("b") == 0.0
    with pytest.raises(KeyError):
        b.update("c", 1.0)
    with pytest.raises(ValueError):
        Bandit(["a", "a"])


def test_a_restored_bandit_continues_exactly_as_the_one_it_was_saved_from() -> None:
    b = Bandit(["mutate", "llm"])
    play(b, 9, 30, noisy)
    saved = json.loads(json.dumps(b.state()))  # as it goes through state.json
    again = Bandit.from_state(saved, ["mutate", "llm"])
    assert again.state() == b.state()
    assert play(again, 10, 40, noisy) == play(b, 10, 40, noisy)
    # an arm added to the config starts untried: it is chosen next
    grown = Bandit.from_state(saved, ["mutate", "llm", "llm_diff"])
    assert grown.choose(random.Random(0)) == "llm_diff" and grown.pulls["mutate"] > 0


# --- the kernel, the real phi3, two runs ----------------------------------------------------
def models(tiny: Path) -> dict[str, dict[str, Any]]:
    return {"phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"}}


def osiris_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from osiris_core.cli import main; main()",
                           *args], capture_output=True, text=True, timeout=timeout)


def fingerprint(variants: list[Variant]) -> list[tuple[Any, ...]]:
    return [(v.id, v.parent, v.planner, v.decision, v.source_sha256, v.reward_cheap,
             v.reward_full, v.sub_rewards, v.why) for v in variants]


async def count_phi3_requests(url: str) -> tuple[Any, list[str]]:
    """Every request on phi3's generation subjects, seen by a subscriber of our own."""
    seen: list[str] = []
    nc = await nats.connect(url)

    async def cb(msg: Any) -> None:
        seen.append(msg.subject)

    for subject in (PHI3_GUIDED.name, PHI3_GENERATE.name):
        await nc.subscribe(subject, cb=cb)
    await nc.flush()
    return nc, seen


async def no_events(kind: str, v: Variant, message: str) -> None:
    return None




async def test_a_second_auto_run_with_the_same_seed_replays_the_archive_without_asking_phi3(
        tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        fresh_nats_url: str, tmp_path: Path) -> None:
    n = 4
    csv = make_data(tmp_path / "market.csv", bars=400, seed=3)
    dgm = {"market_csv": str(csv), "shadow_decisions": 0, "monitor_max_pairs": 0,
           "lint": False, "seed": 4}
    cfg = osiris_config(
        plugins=["phi3", "orchestrator", "feedback", "dgm"], nats=fresh_nats_url,
        tables={**models(tiny_models), "orchestrator": {"risk": PERMISSIVE}, "dgm": dgm})
    data = Path(cfg.settings.data_dir)
    runs: list[RunReply] = []
    asked: list[list[str]] = []
    for attempt in range(2):
        nc, seen = await count_phi3_requests(fresh_nats_url)
        try:
            async with osiris_runtime(cfg) as rt:
                runs.append(await rt.bus.request(DGM_RUN, RunRequest(iterations=n,
                                                                     planner="auto"),
                                                 reply_type=RunReply, timeout=900))
                status: ControlReply = await rt.bus.control("dgm", StatusOp(), timeout=10)
                auto = status.status.facts["auto"]
                if attempt == 0:
                    rows = await archive_rows(rt.bus, n + 1, timeout=60.0)
                    out = await asyncio.to_thread(osiris_cli, "dgm", "archive", "-c",
                                                  str(cfg.path))
                    assert out.returncode == 0, out.stderr
        finally:
            await nc.drain()
        asked.append(seen)
        if attempt == 0:  # a fresh kernel, orchestrator and archive; the caches stay
            # the bandit's state survives a restart: a new kernel reads it back
            state = json.loads((data / "dgm" / "state.json").read_text())["bandit"]
            restored = Kernel(msgspec.convert(dgm, DgmConfig), OrchestratorConfig(), data,
                              None, no_events, csv)
            assert restored.bandit.state() == state
            assert restored.facts()["auto"] == auto
            for p in (data / "dgm" / "variants", data / "policy"):
                shutil.rmtree(p)
            (data / "dgm" / "state.json").unlink()
            # the orchestrator's slots also live in NATS (every replica follows them)
            js_nc = await nats.connect(fresh_nats_url)
            try:
                await js_nc.jetstream().delete_key_value(OrchestratorConfig().policy_bucket)
            finally:
                await js_nc.close()
    first, second = runs
    for v in first.iterations:
        print(v.id, v.planner, v.decision, v.reward_full, v.why, v.reason[:80])
    print("auto:", auto, "phi3 requests:", len(asked[0]), len(asked[1]))

    # auto chose among its arms, tried each, and says which one made each variant
    planners = [v.planner for v in first.iterations]
    assert set(planners) == {"auto:mutate", "auto:llm"}, planners
    assert sum(a["pulls"] for a in auto.values()) == n
    # the same seed: the identical archive, and not one request to phi3 the second time
    assert fingerprint(second.iterations) == fingerprint(first.iterations)
    assert (second.best, second.best_reward, second.seed_reward) == \
        (first.best, first.best_reward, first.seed_reward)
    assert PHI3_GUIDED.name in asked[0] and PHI3_GENERATE.name in asked[0]
    assert asked[1] == []

    # the llm planner's why is kept with its variant, in the store and in `osiris dgm archive`
    whys = {v.id: v.why for v in first.iterations if v.planner == "auto:llm" and v.why}
    assert whys, fingerprint(first.iterations)
    by_id = {r["id"]: r for r in rows}
    for vid, why in whys.items():
        assert by_id[vid]["why"] == why
        assert f"(why: {why})" in out.stdout, out.stdout
    assert "auto:llm" in out.stdout and "auto:mutate" in out.stdout

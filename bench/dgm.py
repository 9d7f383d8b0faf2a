"""dgm: the self-improvement kernel on the tiny models, on fixed synthetic markets.

Measures, in one run:
  * iterations per minute with `mutate` (stage 1 lint on and off), against the same variants
    backtested in-process without the sandbox (the baseline: what the safety costs);
  * the best archived reward against the seed policy's after K iterations;
  * the false-promotion rate: `null` iterations (variants that cannot change a decision);
  * the time from promotion of a variant that loses live to its automatic rollback (the live
    market falls while the backtest market rose), over several seeds.

    .venv/bin/python bench/dgm.py [--iterations 30] [--null 50] [--rollbacks 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import random
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from osiris_dgm.contracts import DGM_PLAN, PlanReply, PlanRequest
from osiris_dgm.diff import make_diff
from osiris_dgm.harness import decide
from osiris_dgm.kernel import Kernel
from osiris_dgm.reward import score_decisions
from osiris_orchestrator.policy import default_source, load_policy
from osiris_sim.csvdata import make_data

from osiris_contracts.messages import DgmEvent
from osiris_core.config import load_config
from osiris_core.nats.server import EmbeddedNats
from osiris_core.runtime.node import Runtime
from osiris_core.testing import write_config

ROOT = Path(__file__).resolve().parent.parent
PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}


@contextlib.asynccontextmanager
async def runtime(tmp: Path, tiny: Path, plugins: list[str],
                  tables: dict[str, Any]) -> AsyncIterator[Runtime]:
    with EmbeddedNats(tmp / "nats") as srv:
        models = {"phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"},
                  "hermes": {"model": str(tiny / "hermes"), "device": "cpu"}}
        path = write_config(tmp / "osiris.toml", srv.url, plugins,
                            {k: v for k, v in {**models, **tables}.items()
                             if k in plugins or k in tables})
        rt = Runtime(load_config(path))
        await rt.start()
        try:
            yield rt
        finally:
            await rt.stop()


def in_process_backtest(kernel: Kernel, vid: str) -> float:
    """The baseline: the same backtest with the policy loaded in this process (no sandbox)."""
    w = kernel._market()
    policy = load_policy(vid, kernel.archive.source(vid))
    t0 = time.perf_counter()
    for full in (False, True):
        idx = range(len(w.ends)) if full else range(w.cheap)
        decided = {k: decide(policy, kernel.orch.query, w.batch(k), kernel.cache.replies,
                             kernel.model_key) for k in idx}
        score_decisions(w, decided, kernel.orch.risk, kernel.orch.trade_horizon_bars,
                        kernel.cfg.drawdown_weight, kernel.cfg.violation_penalty,
                        w.groups if full else None)
    return time.perf_counter() - t0


async def iterations(tiny: Path, n: int, n_null: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="osiris-bench-dgm-") as d:
        tmp = Path(d)
        csv = make_data(tmp / "market.csv", bars=1200, seed=7)
        for lint in (True, False):
            sub = tmp / f"lint-{lint}"
            sub.mkdir()
            async with runtime(sub, tiny, ["phi3", "orchestrator", "feedback", "dgm"], {
                    "orchestrator": {"risk": PERMISSIVE},
                    "dgm": {"market_csv": str(csv), "lint": lint, "shadow_decisions": 0,
                            "monitor_max_pairs": 0}}) as rt:
                t0 = time.perf_counter()
                seed = await rt.bus.request("osiris.dgm.run", {"iterations": 1, "planner": "nop"},
                                            timeout=600)
                out[f"seed_s_{lint}"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                res = await rt.bus.request("osiris.dgm.run",
                                           {"iterations": n, "planner": "mutate"}, timeout=3600)
                out[f"iter_s_{lint}"] = (time.perf_counter() - t0) / n
                kernel: Kernel = rt.cell("dgm").actor.kernel  # type: ignore[attr-defined]
                evaluated = [v["id"] for v in res["iterations"] if v["reward_full"] is not None]
                out["inproc_s"] = (sum(in_process_backtest(kernel, v) for v in evaluated)
                                   / max(1, len(evaluated)))
                out["sandbox_eval_s"] = None
                if lint:
                    out.update(best=res["best"], best_reward=res["best_reward"],
                               seed_reward=seed["seed_reward"], live=res["live"],
                               decisions={k: [v["decision"] for v in res["iterations"]].count(k)
                                          for k in {v["decision"] for v in res["iterations"]}})
                else:
                    t0 = time.perf_counter()
                    for vid in evaluated:
                        await kernel.score(vid, kernel.archive.source(vid), False)
                        await kernel.score(vid, kernel.archive.source(vid), True)
                    out["sandbox_eval_s"] = (time.perf_counter() - t0) / max(1, len(evaluated))
                    nul = await rt.bus.request("osiris.dgm.run",
                                               {"iterations": n_null, "planner": "null"},
                                               timeout=3600)
                    out["null_accepted"] = sum(v["decision"] in ("accepted", "kept", "live")
                                               for v in nul["iterations"])
                    out["null_n"] = n_null
    return out


def trend_csv(path: Path, bars: int, drift: float, seed: int) -> Path:
    rng = random.Random(seed)
    price, t0 = 100.0, datetime(2024, 1, 1, tzinfo=UTC)
    rows = ["timestamp,open,high,low,close,volume,symbol"]
    for i in range(bars):
        o = price
        price *= math.exp(drift + rng.gauss(0.0, 0.002))
        rows.append(f"{(t0 + timedelta(hours=i)).isoformat()},{o:.4f},{max(o, price) * 1.001:.4f},"
                    f"{min(o, price) * 0.999:.4f},{price:.4f},1000,SIM")
    path.write_text("\n".join(rows) + "\n")
    return path


async def rollback(tiny: Path, seed: int) -> dict[str, float]:
    src = default_source()
    long = make_diff(src, src.replace("    p = dict(proposal)\n",
                                      '    p = dict(proposal)\n    p["side"] = "LONG"\n'
                                      '    p["new_stop_pct"] = 1.0\n    p["new_target_pct"] = 2.0\n'))
    with tempfile.TemporaryDirectory(prefix="osiris-bench-dgm-rb-") as d:
        tmp = Path(d)
        up = trend_csv(tmp / "up.csv", 400, 0.004, seed)
        down = trend_csv(tmp / "down.csv", 2000, -0.004, seed + 100)
        async with runtime(tmp, tiny, ["phi3", "hermes", "orchestrator", "feedback", "dgm", "sim"], {
                "orchestrator": {"risk": PERMISSIVE, "ticks_per_proposal": 5,
                                 "trade_horizon_bars": 5, "assess_max_length": 8},
                "sim": {"csv": str(down), "speed": "36000x", "loop": True},
                "dgm": {"market_csv": str(up), "serve_planners": False, "shadow_decisions": 2,
                        "monitor_min_pairs": 4, "monitor_max_pairs": 60,
                        "monitor_interval_s": 0.5}}) as rt:
            seen: dict[str, float] = {}
            pairs: list[int] = []

            async def on_event(msg: Any) -> None:
                e = msgspec.json.decode(msg.data, type=DgmEvent)
                seen.setdefault(e.kind, time.monotonic())
                if e.kind == "rolled_back":
                    pairs.append(int(e.variant.live.get("pairs", 0)))

            async def plan(msg: Any) -> None:
                req = msgspec.json.decode(msg.data, type=PlanRequest)
                await msg.respond(msgspec.json.encode(PlanReply(diff=long, planner=req.planner)))

            subs = [await rt.bus.nc.subscribe("osiris.dgm.events", cb=on_event),
                    await rt.bus.nc.subscribe(DGM_PLAN.name, cb=plan)]
            await rt.bus.request("osiris.dgm.run", {"planner": "long"}, timeout=600)
            deadline = time.monotonic() + 300
            while "rolled_back" not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for s in subs:
                await s.unsubscribe()
            if "rolled_back" not in seen:
                return {"promote_to_rollback_s": float("nan"), "pairs": 0.0}
            return {"promote_to_rollback_s": seen["rolled_back"] - seen["applied"],
                    "shadow_to_promote_s": seen["applied"] - seen["shadow"],
                    "pairs": float(pairs[0] if pairs else 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--null", type=int, default=50)
    ap.add_argument("--rollbacks", type=int, default=3)
    args = ap.parse_args()
    tiny = Path(os.environ.get("OSIRIS_TINY_MODELS") or ROOT / "build" / "tiny-models")
    if not (tiny / "phi3-onnx").exists():
        raise SystemExit(f"no tiny models in {tiny}: run 'osiris models tiny {tiny}' first")
    warnings.simplefilter("ignore")
    it = asyncio.run(iterations(tiny, args.iterations, args.null))
    rb = [asyncio.run(rollback(tiny, s)) for s in range(args.rollbacks)]
    print(f"\ndgm bench — {platform.node()}, {os.cpu_count()} CPUs, "
          f"{datetime.now(UTC):%Y-%m-%d}, tiny models\n")
    print("| measure | value | baseline | ratio |")
    print("| --- | ---: | ---: | ---: |")
    base = it["inproc_s"]
    for name, key in (("iteration, mutate, lint on (s)", "iter_s_True"),
                      ("iteration, mutate, lint off (s)", "iter_s_False"),
                      ("sandboxed cheap+full backtest of a variant (s)", "sandbox_eval_s")):
        v = it[key]
        print(f"| {name} | {v:.3f} | {base:.3f} in-process | {v / base:.1f}× |")
    print(f"| iterations per minute, lint on / off | {60 / it['iter_s_True']:.1f} / "
          f"{60 / it['iter_s_False']:.1f} | | |")
    print(f"| scoring the seed (first phi3 replies) (s) | {it['seed_s_True']:.1f} | | |")
    print(f"| best archived reward after {args.iterations} (live: {it['live']}) | "
          f"{it['best_reward']:+.3f} | {it['seed_reward']:+.3f} seed | "
          f"{it['best_reward'] - it['seed_reward']:+.3f} |")
    print(f"| false promotions, null planner | {it['null_accepted']} / {it['null_n']} | | |")
    for i, r in enumerate(rb):
        print(f"| live drop → rollback, seed {i} (s; pairs) | {r['promote_to_rollback_s']:.1f}; "
              f"{r['pairs']:.0f} | | |")
    print(f"\ndecisions after {args.iterations} mutate iterations: {it['decisions']}")


if __name__ == "__main__":
    main()

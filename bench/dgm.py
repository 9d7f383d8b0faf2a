"""dgm: the self-improvement kernel on the tiny models, on fixed synthetic markets.

Measures, in one run:
  * iterations per minute with `mutate` (stage 1 lint on and off), against the same variants
    backtested in-process without the sandbox (the baseline: what the safety costs);
  * the best archived reward against the seed policy's after K iterations;
  * the false-promotion rate: `null` iterations (variants that cannot change a decision);
  * the time from promotion of a variant that loses live to its automatic rollback (the live
    market falls while the backtest market rose), over several seeds.

    .venv/bin/python bench/dgm.py [--iterations 30] [--null 50] [--rollbacks 3]

With `--planners`, it compares planners instead, on the small model (phi3 as `osiris demo`
serves it) and the demo's market: for each planner and each kernel seed a fresh runtime runs
`--iterations` iterations, then one `null` run counts false promotions. Each finished run is
saved to `--out` (JSON) and skipped when the script is run again, so a long comparison can run
in parts; `--replot` only prints the table and draws the PNG from the saved runs.

    OSIRIS_SMALL_MODELS=build/small-models .venv/bin/python bench/dgm.py \
        --planners mutate,llm,auto --seeds 3 --iterations 100 [--null 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from osiris_dgm.actor import DgmActor
from osiris_dgm.contracts import DGM_PLAN, PlanReply, PlanRequest
from osiris_dgm.diff import make_diff
from osiris_dgm.harness import decide
from osiris_dgm.kernel import Kernel
from osiris_dgm.reward import score_decisions
from osiris_orchestrator.policy import default_source, load_policy
from osiris_sim.csvdata import make_data

from osiris_contracts.messages import DgmEvent
from osiris_core.config import load_config
from osiris_core.nats.bus import Bus
from osiris_core.nats.server import EmbeddedNats
from osiris_core.runtime.node import Runtime
from osiris_core.testing import write_config

ROOT = Path(__file__).resolve().parent.parent
PERMISSIVE = {"min_stop_pct": 0.0, "max_stop_pct": 1e9, "max_target_pct": 1e9,
              "min_confidence": 0.0, "min_reward_risk": 0.0, "allowed_sides": []}


def tiny_models(tiny: Path) -> dict[str, Any]:
    return {"phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu"},
            "hermes": {"model": str(tiny / "hermes"), "device": "cpu"}}


@contextlib.asynccontextmanager
async def runtime(tmp: Path, tiny: Path | dict[str, Any], plugins: list[str],
                  tables: dict[str, Any]) -> AsyncIterator[Runtime]:
    """A runtime on its own nats-server; `tiny` is the tiny models' folder or the model
    actors' tables."""
    with EmbeddedNats(tmp / "nats") as srv:
        models = tiny_models(tiny) if isinstance(tiny, Path) else tiny
        path = write_config(tmp / "osiris.toml", srv.url, plugins,
                            {k: v for k, v in {**models, **tables}.items()
                             if k in plugins or k in tables})
        rt = Runtime(load_config(path))
        await rt.start()
        try:
            yield rt
        finally:
            await rt.stop()


def bus(rt: Runtime) -> Bus:
    assert rt.bus is not None, "the runtime is not started"
    return rt.bus


def kernel_of(rt: Runtime) -> Kernel:
    actor = rt.cell("dgm").actor
    assert isinstance(actor, DgmActor), "the dgm actor is not running"
    return actor.kernel


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
                seed = await bus(rt).request("osiris.dgm.run", {"iterations": 1, "planner": "nop"},
                                            timeout=600)
                out[f"seed_s_{lint}"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                res = await bus(rt).request("osiris.dgm.run",
                                           {"iterations": n, "planner": "mutate"}, timeout=3600)
                out[f"iter_s_{lint}"] = (time.perf_counter() - t0) / n
                kernel = kernel_of(rt)
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
                    nul = await bus(rt).request("osiris.dgm.run",
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

            subs = [await bus(rt).nc.subscribe("osiris.dgm.events", cb=on_event),
                    await bus(rt).nc.subscribe(DGM_PLAN.name, cb=plan)]
            await bus(rt).request("osiris.dgm.run", {"planner": "long"}, timeout=600)
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

# --- planner comparison (--planners) ------------------------------------------------------
ACCEPTED = frozenset({"accepted", "shadow", "live", "kept", "rolled_back"})
"""Final decisions of a variant the paired bootstrap accepted over its parent."""
BEFORE_STAGE2 = ("patch rejected", "diff is", "static check", "stage 1", "lint could not run")
"""Reasons of a rejection before the backtest: such a proposal was not a valid edit."""


def small_tables(small: Path) -> dict[str, Any]:
    """phi3 on the small model as `osiris demo` serves it (GenAI folder, no few-shot), and
    the demo's orchestrator settings."""
    from osiris_orchestrator import prepare_demo

    orch = {k: v for k, v in prepare_demo(small).items() if k != "speak"}
    return {"phi3": {"model": str(small / "small-onnx"), "provider": "cpu", "few_shot": 0},
            "orchestrator": orch}


CANDIDATES = re.compile(r"candidate (?P<i>\d+)/\d+, (?P<dup>\d+) duplicate, (?P<bad>\d+) invalid")
FALLBACK = re.compile(r"all (?P<dup>\d+) valid llm candidates of (?P<k>\d+)")
"""The llm planner's note: how many candidates it sampled, and how many it dropped."""


def valid_edit(row: dict[str, Any]) -> bool:
    """The proposal reached stage 2 (the backtest): it applied, passed the static check and
    stage 1 (an error or a no-op did not)."""
    if row["decision"] in ("error", "noop"):
        return False
    return not (row["decision"] == "rejected" and row["reason"].startswith(BEFORE_STAGE2))


async def plan_stats(rt: Runtime) -> tuple[int, int]:
    """(requests, processing ns) of the dgm-planner's osiris.dgm.plan endpoint, from its NATS
    micro service stats: the planner's own time, without the kernel's evaluation."""
    stats = await bus(rt).request("$SRV.STATS.dgm-planner", timeout=10)
    ep = next(e for e in stats["endpoints"] if e["subject"] == DGM_PLAN.name)
    return int(ep["num_requests"]), int(ep["processing_time"])


def status(line: str) -> None:
    sys.stderr.write("\r" + line[:150].ljust(150))
    sys.stderr.flush()


def planner_run(small: Path, planner: str, seed: int, n: int, cache: Path,
                label: str) -> dict[str, Any]:
    """One fresh runtime, `n` iterations of `planner` under kernel seed `seed`: a row per
    iteration (the variant's final record, the planner's seconds, the proposal's note).

    The backtest's phi3 replies (greedy, keyed by prompt and model) are shared between runs
    through `cache`: the same replies phi3 would give again, without hours of asking; the
    planners' own replies are not shared, so their time is measured."""
    with tempfile.TemporaryDirectory(prefix="osiris-bench-dgm-pl-") as d:
        tmp = Path(d)
        replies = tmp / "data" / "dgm" / "replies.jsonl"
        replies.parent.mkdir(parents=True)
        if cache.exists():
            shutil.copyfile(cache, replies)
        t0 = time.perf_counter()
        try:
            run = asyncio.run(_planner_run(tmp, small, planner, seed, n, label))
        finally:
            if replies.exists() and (not cache.exists()
                                     or replies.stat().st_size > cache.stat().st_size):
                cache.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(replies, cache)  # append-only: the longer file has every reply
    return {**run, "wall_s": time.perf_counter() - t0}


async def _planner_run(tmp: Path, small: Path, planner: str, seed: int, n: int,
                       label: str) -> dict[str, Any]:
    tables = {**small_tables(small),
              "dgm": {"seed": seed, "holdout_fraction": 0.2, "shadow_decisions": 0,
                      "monitor_max_pairs": 0}}
    t0 = time.perf_counter()
    async with runtime(tmp, tables, ["phi3", "orchestrator", "dgm"], {}) as rt:
        notes: dict[str, str] = {}

        async def on_event(msg: Any) -> None:
            e = msgspec.json.decode(msg.data, type=DgmEvent)
            if e.kind == "proposed":
                notes[e.variant.id] = e.message

        sub = await bus(rt).nc.subscribe("osiris.dgm.events", cb=on_event)
        plan_s: dict[int, float] = {}
        seed_reward = None
        for i in range(1, n + 1):
            status(f"{label}: iteration {i}/{n}, {time.perf_counter() - t0:.0f} s")
            before = await plan_stats(rt)
            res = await bus(rt).request("osiris.dgm.run", {"iterations": 1, "planner": planner},
                                       timeout=3600)
            after = await plan_stats(rt)
            if after[0] > before[0]:
                plan_s[res["iterations"][0]["iteration"]] = (after[1] - before[1]) / 1e9
            seed_reward = res["seed_reward"]
        await bus(rt).nc.flush()
        await sub.unsubscribe()
        kernel = kernel_of(rt)
        rows = [{"iteration": v.iteration, "id": v.id, "parent": v.parent,
                 "planner": v.planner, "decision": v.decision, "reason": v.reason,
                 "reward_full": v.reward_full, "source_sha256": v.source_sha256,
                 "plan_s": plan_s.get(v.iteration), "note": notes.get(v.id, ""), "why": v.why}
                for v in sorted(kernel.archive.variants.values(), key=lambda v: int(v.id))]
    return {"planner": planner, "seed": seed, "iterations": n, "seed_reward": seed_reward,
            "rows": rows}


def run_metrics(run: dict[str, Any]) -> dict[str, Any]:
    """Per run: valid, novel, accepted per 100, best reward, planner seconds per proposal,
    and the best reward after each iteration (the plot)."""
    rows = [r for r in run["rows"] if r["iteration"] > 0 or r["parent"] is not None]
    seen = {r["source_sha256"] for r in run["rows"] if r["parent"] is None}
    novel = 0
    for r in rows:  # in id order: novel = no earlier variant had this source
        if r["source_sha256"] and r["decision"] != "noop" and r["source_sha256"] not in seen:
            novel += 1
        if r["source_sha256"]:
            seen.add(r["source_sha256"])
    n = max(1, len(rows))
    best, curve = run["seed_reward"], []
    by_iter = {r["iteration"]: r for r in rows}
    for i in range(1, run["iterations"] + 1):
        r = by_iter.get(i)
        if r and r["reward_full"] is not None and r["decision"] not in ("rejected", "error"):
            best = max(best, r["reward_full"])
        curve.append(best)
    times = [r["plan_s"] for r in rows if r["plan_s"] is not None]
    sampled = invalid = dups = 0  # the llm planner's candidates, before it drops duplicates
    for r in rows:
        if m := CANDIDATES.search(r["note"]):
            sampled += int(m["i"])
            dups, invalid = dups + int(m["dup"]), invalid + int(m["bad"])
        elif m := FALLBACK.search(r["note"]):
            sampled += int(m["k"])
            dups, invalid = dups + int(m["dup"]), invalid + int(m["k"]) - int(m["dup"])
    arms: dict[str, int] = {}
    for r in rows:
        arms[r["planner"]] = arms.get(r["planner"], 0) + 1
    return {"valid": sum(valid_edit(r) for r in rows) / n, "novel": novel / n,
            "accepted": 100.0 * sum(r["decision"] in ACCEPTED for r in rows) / n,
            "best": curve[-1] if curve else best, "seed_reward": run["seed_reward"],
            "plan_s": sum(times) / len(times) if times else float("nan"),
            "plan_max_s": max(times, default=float("nan")),
            "fallback": sum(r["note"].startswith("mutate fallback") for r in rows) / n,
            "errors": sum(r["decision"] == "error" for r in rows), "arms": arms,
            "sampled": sampled, "cand_invalid": invalid, "cand_dup": dups,
            "curve": curve, "n": len(rows)}


def spread(xs: list[float], fmt: str) -> str:
    if not xs:
        return "—"
    mean = sum(xs) / len(xs)
    if len(xs) == 1:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ({format(min(xs), fmt)}–{format(max(xs), fmt)})"


def planner_table(runs: dict[str, dict[str, Any]], planners: list[str], seeds: list[int]) -> str:
    m = {k: run_metrics(r) for k, r in runs.items() if r["planner"] != "null"}
    out = ["| planner | seeds × iterations | valid edits | novel | accepted / 100 | "
           "best reward | s / proposal (planner) | fell back to mutate |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in planners:
        ms = [m[f"{p}/{s}"] for s in seeds if f"{p}/{s}" in m]
        if not ms:
            continue
        out.append(f"| {p} | {len(ms)} × {'/'.join(str(x['n']) for x in ms)} | "
                   f"{spread([100 * x['valid'] for x in ms], '.0f')} % | "
                   f"{spread([100 * x['novel'] for x in ms], '.0f')} % | "
                   f"{spread([x['accepted'] for x in ms], '.1f')} | "
                   f"{spread([x['best'] for x in ms], '+.2f')} | "
                   f"{spread([x['plan_s'] for x in ms], '.2f')} | "
                   f"{spread([100 * x['fallback'] for x in ms], '.0f')} % |")
    for p in planners:
        ms = [m[f"{p}/{s}"] for s in seeds if f"{p}/{s}" in m]
        n = sum(x["sampled"] for x in ms)
        if n:
            bad, dup = sum(x["cand_invalid"] for x in ms), sum(x["cand_dup"] for x in ms)
            out.append(f"\n{p}: the model's own candidates, before the planner drops archived "
                       f"ones: {n} sampled, {100 * (n - bad) / n:.0f} % valid edits, "
                       f"{100 * (n - bad - dup) / max(1, n - bad):.0f} % of those novel.")
    slowest = {p: max((x["plan_max_s"] for k, x in m.items() if k.startswith(f"{p}/")),
                      default=float("nan")) for p in planners}
    out.append("Slowest proposal: " + ", ".join(f"{p} {t:.1f} s" for p, t in slowest.items())
               + ".")
    seed_rewards = sorted({round(x["seed_reward"], 6) for x in m.values()})
    out.append("")
    out.append(f"Seed policy's reward: {', '.join(f'{r:+.2f}' for r in seed_rewards)}.")
    ratios = []
    for s in seeds:
        a, b = m.get(f"auto/{s}"), m.get(f"mutate/{s}")
        if a and b:
            ratios.append(f"seed {s}: {a['accepted']:.0f} / {b['accepted']:.0f} = "
                          + (f"{a['accepted'] / b['accepted']:.2f}×" if b["accepted"] else "—"))
    if ratios:
        out.append("auto's accepted per 100 ÷ mutate's, per seed: " + "; ".join(ratios) + ".")
    for s in seeds:
        if f"auto/{s}" in m:
            arms = m[f"auto/{s}"]["arms"]
            out.append(f"auto seed {s} chose: "
                       + ", ".join(f"{k.removeprefix('auto:')} {v}" for k, v in sorted(arms.items()))
                       + f"; best {m[f'auto/{s}']['best']:+.2f}.")
    if "null/0" in runs:
        rows = runs["null/0"]["rows"]
        bad = sum(r["decision"] in ACCEPTED for r in rows if r["parent"] is not None)
        out.append(f"False promotions, `null` planner: {bad} / "
                   f"{sum(r['parent'] is not None for r in rows)}.")
    return "\n".join(out)


def planner_plot(runs: dict[str, dict[str, Any]], planners: list[str], seeds: list[int],
                 paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=90)
    colours = {"mutate": "tab:blue", "llm": "tab:orange", "auto": "tab:green"}
    seed_reward = None
    for p in planners:
        curves = [run_metrics(runs[f"{p}/{s}"])["curve"] for s in seeds if f"{p}/{s}" in runs]
        if not curves:
            continue
        seed_reward = runs[f"{p}/{seeds[0]}"]["seed_reward"] if f"{p}/{seeds[0]}" in runs \
            else seed_reward
        c = colours.get(p)
        for k, curve in enumerate(curves):
            ax.plot(range(1, len(curve) + 1), curve, color=c, alpha=0.35, lw=1,
                    label=None if k else None)
        width = min(len(x) for x in curves)
        mean = [sum(x[i] for x in curves) / len(curves) for i in range(width)]
        ax.plot(range(1, width + 1), mean, color=c, lw=2.2,
                label=f"{p} (mean of {len(curves)} seeds; thin: each seed)")
    if seed_reward is not None:
        ax.axhline(seed_reward, color="grey", ls="--", lw=1, label="seed policy")
    ax.set_xlabel("iteration")
    ax.set_ylabel("best archived reward (held-out window)")
    ax.set_title("dgm planners on the small model, demo market")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    for path in paths:
        fig.savefig(path)
    plt.close(fig)


def compare_planners(args: argparse.Namespace) -> None:
    planners = [p.strip() for p in args.planners.split(",") if p.strip()]
    seeds = list(range(args.seeds))
    out = Path(args.out)
    runs: dict[str, dict[str, Any]] = json.loads(out.read_text()) if out.exists() else {}
    small = Path(os.environ.get("OSIRIS_SMALL_MODELS") or ROOT / "build" / "small-models")
    todo = [(p, s, args.iterations) for s in seeds for p in planners]
    if args.null:
        todo.append(("null", 0, args.null))
    if not args.replot:
        if not (small / "small-onnx").exists():
            raise SystemExit(f"no small model in {small}: build it with "
                             f"'osiris models small {small}' (or set OSIRIS_SMALL_MODELS)")
        t0 = time.perf_counter()
        for p, s, n in todo:
            key = f"{p}/{s}"
            if key in runs and runs[key]["iterations"] >= n:
                continue
            runs[key] = planner_run(small, p, s, n, Path(args.cache), f"{p} seed {s}")
            out.write_text(json.dumps(runs, indent=1))  # each run kept as soon as it is done
        status(f"done in {time.perf_counter() - t0:.0f} s")
        sys.stderr.write("\n")
    print(f"\ndgm planners — {platform.node()}, {os.cpu_count()} CPUs, "
          f"{datetime.now(UTC):%Y-%m-%d}, small model ({small.name})\n")
    print(planner_table(runs, planners, seeds))
    wall = {k: round(r["wall_s"]) for k, r in runs.items()}
    print(f"\nwall seconds per run: {wall}")
    planner_plot(runs, planners, seeds, [Path(p) for p in args.png.split(",")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--null", type=int, default=50)
    ap.add_argument("--rollbacks", type=int, default=3)
    ap.add_argument("--planners", default="",
                    help="compare these planners (e.g. mutate,llm,auto) on the small model")
    ap.add_argument("--seeds", type=int, default=3, help="kernel seeds per planner")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "dgm_planners.json"),
                    help="saved runs of --planners (a run already there is skipped)")
    ap.add_argument("--cache", default=str(ROOT / "build" / "dgm-bench" / "replies.jsonl"),
                    help="the backtest's phi3 replies shared between --planners runs")
    ap.add_argument("--png", default=",".join(str(ROOT / p) for p in (
        "bench/dgm_planners.png", "docs/dgm_planners.png")))
    ap.add_argument("--replot", action="store_true",
                    help="only the table and the PNG, from the saved runs")
    args = ap.parse_args()
    if args.planners:
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)  # progress is the one line; errors still show
        compare_planners(args)
        return
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

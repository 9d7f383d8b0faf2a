"""trainer: one training run on the tiny Phi-3, in-process vs the actor's child process.

Baseline: `osiris_trainer.train.run` called in this process with torch already imported
(what a run costs when nothing is isolated). Against it: the same run as the trainer actor
does it, `python -m osiris_trainer.job` in a fresh process (import, train, export, exit),
which buys crash and memory isolation. Per-phase seconds are printed for both (the gate's
scoring runs in phi3, not here: bench/learning.py measures it).

    .venv/bin/python bench/trainer.py [--examples 40] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import msgspec
from osiris_trainer.config import TrainerConfig
from osiris_trainer.dataset import Example, split
from osiris_trainer.job import JobSpec

from osiris_core.observability.quiet import quiet

ROOT = Path(__file__).resolve().parent.parent
CHOSEN = ('{"ticker":"ZZZ","action":"hold","side":"LONG","new_stop_pct":2.0,'
          '"new_target_pct":6.0,"confidence":0.8,"rationale":"steady"}')


def examples(n: int) -> list[Example]:
    return [Example(id=f"f{i}", prompt=f"Stock {i} moved {i % 7}.{i % 10}% today.",
                    chosen=CHOSEN, rejected=CHOSEN.replace("ZZZ", f"A{i}").replace("hold", "buy"))
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    tiny = Path(os.environ.get("OSIRIS_TINY_MODELS") or ROOT / "build" / "tiny-models")
    if not (tiny / "phi3" / "config.json").exists():
        raise SystemExit(f"no tiny models in {tiny}: run 'osiris models tiny {tiny}' first")
    warnings.simplefilter("ignore")
    with quiet():
        from osiris_trainer.train import run

    cfg = TrainerConfig(base_model=str(tiny / "phi3"), sft_steps=60, dpo_steps=20)
    train, held = split(examples(args.examples), cfg.eval_fraction)
    rows: dict[str, list[float]] = {"in-process (baseline)": [], "child process (actor)": []}
    phases: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="osiris-bench-trainer-") as d:
        with quiet():
            run(cfg, tiny / "phi3", train, held, Path(d) / "warm", "warm", lambda m: None)
        for r in range(args.repeat):
            t0 = time.perf_counter()
            with quiet():
                out = run(cfg, tiny / "phi3", train, held, Path(d) / f"a{r}", f"a{r}",
                          lambda m: None)
            rows["in-process (baseline)"].append(time.perf_counter() - t0)
            phases["in-process (baseline)"] = out.phases_s
            spec = Path(d) / "spec.json"
            spec.write_bytes(msgspec.json.encode(JobSpec(
                config=cfg, base_model=str(tiny / "phi3"), version=f"b{r}",
                out_dir=str(Path(d) / f"b{r}"), train=train, held=held)))
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "osiris_trainer.job", str(spec),
                            str(Path(d) / "result.json")], check=True, capture_output=True)
            rows["child process (actor)"].append(time.perf_counter() - t0)
            phases["child process (actor)"] = json.loads((Path(d) / "result.json").read_text())[
                "phases_s"]
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, tiny Phi-3 {tiny}, "
          f"{len(train)} train / {len(held)} held-out corrections, SFT 60 + DPO 20 steps, "
          f"median of {args.repeat}")
    names = ["load", "sft", "dpo", "export"]
    print(f"{'path':<24} {'total s':>8} {'vs base':>8}  " + " ".join(f"{n:>11}" for n in names))
    print("-" * (44 + 12 * len(names)))
    base = statistics.median(rows["in-process (baseline)"])
    for name, times in rows.items():
        med = statistics.median(times)
        ph = phases[name]
        print(f"{name:<24} {med:>8.2f} {med / base:>7.2f}x  "
              + " ".join(f"{ph.get(n, 0.0):>11.2f}" for n in names))


if __name__ == "__main__":
    main()

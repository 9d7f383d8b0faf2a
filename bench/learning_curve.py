"""The learning curve on the path users are served: held-out decision agreement of phi3
(SmolLM2-135M, GenAI int4, JSON guidance, ticker grounding) against the number of
corrections the adapter trained on, for both house policies, several seeds, beside the
best constant answer, the served base and few-shot served. Writes a table (stdout and
`--out` markdown) and a PNG.

    .venv/bin/python bench/learning_curve.py --sizes 10,30,100,300 --seeds 0,1,2 --held 200

`--points FILE` appends each point as it completes, so a curve can be run in parts (a policy
or a size at a time) and `--replot FILE …` draws the table and PNG of all of them.

Each point trains an adapter with the trainer's own code (`osiris_trainer.train.run`: the
recipe `[plugins.trainer]` has for the small model, export to `.onnx_adapter` included) and
scores it with phi3's own serving code (`osiris_phi3.serving.decide`: the prompt, guidance,
grounding and decoding the actor serves, in-process instead of over NATS). A seed picks
which corrections of the pool are trained on (balanced over the rule's regions) and the
training order and initialisation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def sample(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """n training rows balanced over regions (round robin over seeded shuffles of each
    region's rows)."""
    by_region: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["split"] == "train":
            by_region.setdefault(r["region"], []).append(r)
    rng = random.Random(seed)
    for rs in by_region.values():
        rng.shuffle(rs)
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n:
        for rs in by_region.values():
            if i < len(rs) and len(out) < n:
                out.append(rs[i])
        i += 1
    return out


def _fmt(i: dict[str, float]) -> str:
    return f"{i['mean']:.0%} [{i['lo']:.0%}–{i['hi']:.0%}]"


def load_points(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Points saved by `--points` (one JSON object a line), in file order."""
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", type=Path, default=ROOT / "build" / "small-models")
    ap.add_argument("--policies", default="momentum,meanrev")
    ap.add_argument("--sizes", default="10,30,100,300")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--held", type=int, default=200)
    ap.add_argument("--shots", type=int, default=3, help="few-shot corrections for that row")
    ap.add_argument("--out", type=Path, default=None, help="append the markdown table here")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "learning_curve.png")
    ap.add_argument("--points", type=Path, default=None,
                    help="append each point here as it completes (JSON lines)")
    ap.add_argument("--replot", type=Path, nargs="+", default=None,
                    help="no training: the table and PNG of points saved by --points")
    a = ap.parse_args()
    if a.replot:
        results = load_points(a.replot)
        table = markdown(results, f"# learning curve — from {', '.join(map(str, a.replot))}")
        print(table)
        plot(results, a.png)
        print(f"plot: {a.png}")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.simplefilter("ignore")
    import msgspec
    from osiris_models import build_small
    from osiris_models.small import LORA_TARGETS
    from osiris_phi3.config import Phi3Config
    from osiris_phi3.engine import Phi3Engine
    from osiris_phi3.prompt import detect_format
    from osiris_phi3.serving import ServedPath, decide_all
    from osiris_trainer.config import TrainerConfig, settings_for
    from osiris_trainer.dataset import with_few_shot
    from osiris_trainer.houseset import examples, load_rows, subset
    from osiris_trainer.stats import Scored, best_constant, paired_diff_ci
    from osiris_trainer.train import run

    from osiris_contracts.messages import TradeProposal
    from osiris_core.observability.quiet import quiet

    root = build_small(a.models, progress=lambda m: print(f"models: {m}", flush=True))
    folder = root / "small-onnx"
    engine = Phi3Engine(folder, "cpu")
    engine.load()
    path = ServedPath.from_config(Phi3Config(), detect_format(folder))
    cfg = TrainerConfig(**{**settings_for("small", str(root / "small"), "int4", LORA_TARGETS,
                           str(root / "small-onnx")),
                           "few_shot": 0})
    sizes = [int(x) for x in a.sizes.split(",")]
    seeds = [int(x) for x in a.seeds.split(",")]
    tty = sys.stderr.isatty()

    def progress(label: str) -> Any:
        def say(done: int) -> None:
            msg = f"{label}: {done}/{a.held}"
            if tty:
                sys.stderr.write("\r\033[K" + msg)
            elif done == a.held:
                print(msg, file=sys.stderr, flush=True)
        return say

    results: list[dict[str, Any]] = []
    header = (f"# learning curve — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
              f"{os.cpu_count()} cores; SmolLM2-135M served by phi3 (GenAI int4, guided, "
              f"grounded); {a.held} held-out situations per policy; decision fields; "
              f"95 % bootstrap intervals")
    print(header, flush=True)
    for policy in a.policies.split(","):
        rows = load_rows(policy=policy)
        held_rows = subset(rows, 0, a.held)
        held = examples(held_rows).held
        wants = [msgspec.json.decode(e.chosen, type=TradeProposal) for e in held]
        prompts = [(e.prompt, ()) for e in held]
        t0 = time.perf_counter()
        base = Scored.of(decide_all(engine, path, prompts, adapter=None,
                                    progress=progress(f"{policy} base")), wants)
        score_s = time.perf_counter() - t0
        print(f"\n## {policy}: served base {_fmt(base.overall().to_dict())} "
              f"(scored in {score_s:.0f}s)", flush=True)
        for seed in seeds:
            pool = sample(rows, max(sizes), seed)
            shots_ex = with_few_shot(examples(pool + held_rows).held, a.shots,
                                     pool=examples(pool).train)
            few = Scored.of(decide_all(engine, path, [(e.prompt, e.shots) for e in shots_ex],
                                       adapter=None, progress=progress(f"{policy} few-shot")),
                            wants)
            for n in sizes:
                train = examples(pool[:n]).train
                const = best_constant([msgspec.json.decode(e.chosen, type=TradeProposal)
                                       for e in train])
                c = Scored.of([const] * len(held), wants)
                t1 = time.perf_counter()
                with tempfile.TemporaryDirectory(prefix="osiris-curve-") as d, quiet():
                    out = run(msgspec.structs.replace(cfg, seed=seed), root / "small", train,
                              held[:0], Path(d) / "v", f"{policy}-{n}-{seed}",
                              lambda _m: None)
                    train_s = time.perf_counter() - t1
                    name = f"{policy}-{n}-{seed}"
                    engine.load_adapter(name, out.adapter_file)
                got = decide_all(engine, path, prompts, adapter=name,
                                 progress=progress(f"{policy} n={n} seed={seed}"))
                engine.unload_adapter(name)
                ad = Scored.of(got, wants)
                d_c = paired_diff_ci(ad.scores(), c.scores())
                row = {"policy": policy, "n": n, "seed": seed, "held": len(held),
                       **{k: v.overall().to_dict() for k, v in (
                           ("constant", c), ("base", base), ("few_shot", few), ("adapter", ad))},
                       "vs_constant": d_c.to_dict(), "train_s": round(train_s, 1),
                       "valid": sum(ad.valid) / len(ad.valid)}
                results.append(row)
                if a.points:
                    with a.points.open("a") as fh:
                        fh.write(json.dumps(row) + "\n")
                d = row["vs_constant"]
                print(f"{policy:<9} n={n:<4} seed={seed}  constant {_fmt(row['constant'])}  "
                      f"base {_fmt(row['base'])}  few-shot {_fmt(row['few_shot'])}  "
                      f"adapter {_fmt(row['adapter'])}  adapter−constant "
                      f"{100 * d['mean']:+.0f} [{100 * d['lo']:+.0f}, {100 * d['hi']:+.0f}] points  "
                      f"valid {row['valid']:.0%}  trained in {train_s:.0f}s", flush=True)
    table = markdown(results, header)
    print("\n" + table)
    if a.out:
        with a.out.open("a") as fh:
            fh.write("\n" + table + "\n")
    plot(results, a.png)
    print(f"plot: {a.png}")


def markdown(results: Sequence[dict[str, Any]], header: str) -> str:
    lines = [header.replace("# ", "### ", 1), "",
             "| policy | corrections | seed | best constant | served base | few-shot served "
             "| adapter served | adapter − constant (points) | valid | train s |",
             "| --- | ---: | ---: | --- | --- | --- | --- | --- | ---: | ---: |"]
    for r in results:
        d = r["vs_constant"]
        lines.append(f"| {r['policy']} | {r['n']} | {r['seed']} | {_fmt(r['constant'])} | "
                     f"{_fmt(r['base'])} | {_fmt(r['few_shot'])} | {_fmt(r['adapter'])} | "
                     f"{100 * d['mean']:+.0f} [{100 * d['lo']:+.0f}, {100 * d['hi']:+.0f}] | "
                     f"{r['valid']:.0%} | {r['train_s']:.0f} |")
    return "\n".join(lines)


def plot(results: Sequence[dict[str, Any]], png: Path) -> None:
    """Served held-out agreement against corrections, one panel per policy: the adapter
    (mean over seeds, each seed a dot) beside the constant, base and few-shot lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = sorted({r["policy"] for r in results})
    fig, axes = plt.subplots(1, len(policies), figsize=(5.5 * len(policies), 4), squeeze=False)
    for ax, policy in zip(axes[0], policies, strict=True):
        rs = [r for r in results if r["policy"] == policy]
        ns = sorted({r["n"] for r in rs})

        def mean(key: str, n: int, rs: list[dict[str, Any]] = rs) -> float:
            vals = [r[key]["mean"] for r in rs if r["n"] == n]
            return 100 * sum(vals) / len(vals)

        for key, label, style in (("constant", "best constant", ":"),
                                  ("base", "served base", "--"),
                                  ("few_shot", "few-shot served", "-.")):
            # a marker too: a policy measured at one size still shows its baselines
            ax.plot(ns, [mean(key, n) for n in ns], style, marker="_", ms=16, label=label)
        ax.plot(ns, [mean("adapter", n) for n in ns], "o-", lw=2, label="adapter served")
        ax.scatter([r["n"] for r in rs], [100 * r["adapter"]["mean"] for r in rs],
                   s=12, alpha=0.5)
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_ylim(0, 100)
        ax.set_xlabel("corrections trained on")
        ax.set_ylabel("held-out decision agreement, served (%)")
        ax.set_title(policy)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)


if __name__ == "__main__":
    main()

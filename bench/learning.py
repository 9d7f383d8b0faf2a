"""The learning loop on real weights (SmolLM2-135M-Instruct, CPU): does feedback make the
proposals better on situations the model never trained on?

    .venv/bin/python bench/learning.py          # ~8 minutes on 2 cores (first run also builds the model)
    .venv/bin/python bench/learning.py --curve --sizes 10,30,100,300 --seeds 0,1,2

The committed house-policy set (40 situations, `osiris_trainer/data/house_policy.jsonl`)
goes through the real actors on a private nats-server: phi3 answers every prompt with the
base model, the house's corrections arrive through the feedback actor (LanceDB), the trainer
trains on 30 and its gate scores the 10 held out where phi3 serves (best constant, base,
few-shot, live, candidate, with intervals), the adapter is published if it passes, phi3
hot-loads it and answers the held-out prompts again. Baselines: the best constant answer and
the base model, in the same run. `--curve` runs the learning curve instead (200 held out,
two policies; the rest of the arguments go to bench/learning_curve.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def main(models_dir: Path, dpo_steps: int | None) -> None:
    from osiris_models import build_small
    from osiris_models.small import LORA_TARGETS
    from osiris_trainer.config import settings_for
    from osiris_trainer.learning import run_loop
    from osiris_trainer.served import served_table

    from osiris_core.cli import setup_logging
    from osiris_core.config import load_config
    from osiris_core.nats.bus import Bus, connect
    from osiris_core.nats.server import EmbeddedNats
    from osiris_core.runtime.node import Runtime
    from osiris_core.testing import write_config

    setup_logging("INFO")  # the trainer's progress lines
    t0 = time.perf_counter()
    root = build_small(models_dir, progress=lambda m: print(f"models: {m}", flush=True))
    build_s = time.perf_counter() - t0
    trainer = settings_for("small", str(root / "small"), "int4", LORA_TARGETS,
                           str(root / "small-onnx"))
    trainer["few_shot"] = 0
    if dpo_steps is not None:
        trainer["dpo_steps"] = dpo_steps
    with tempfile.TemporaryDirectory(prefix="osiris-learning-") as d, \
            EmbeddedNats(Path(d) / "nats") as srv:
        path = write_config(Path(d) / "osiris.toml", srv.url, ["feedback", "phi3", "trainer"], {
            "phi3": {"model": str(root / "small-onnx"), "provider": "cpu", "few_shot": 0},
            "trainer": trainer})
        rt = Runtime(load_config(path))
        await rt.start()
        nc = await connect(srv.url)
        try:
            res = await run_loop(Bus(nc), say=lambda m: print(f"loop: {m}", flush=True))
        finally:
            await nc.close()
            await rt.stop()
    tr = res.train
    print()
    print(f"# learning loop — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(f"model: SmolLM2-135M-Instruct (built in {build_s:.0f}s; a no-op when up to date)")
    print(f"trainer: {tr.train_examples} train / {tr.eval_examples} held out; phases (s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in tr.phases_s.items()))
    print(f"published: {tr.published} — {tr.reason}")
    print("\nheld-out decision fields as phi3 serves them (the trainer's gate, 95 % intervals):")
    print(served_table(tr.report))
    if res.served_after:
        b, a = res.served(res.served_before), res.served(res.served_after)
        print("\nheld-out through osiris.phi3.generate, as any user's request:")
        for label, s in (("base model", b), ("published adapter", a)):
            i = s.overall()
            print(f"  {label:<20} {i.mean:>5.0%} [{i.lo:.0%}–{i.hi:.0%}]")
        for p, w in zip(res.served_after, res.held_out, strict=True):
            print(f"    {w.ticker:<5} want {w.action}/{w.side}/{w.new_stop_pct:g}/{w.new_target_pct:g}"
                  f"  got {p.action}/{p.side}/{p.new_stop_pct:g}/{p.new_target_pct:g}  {p.rationale!r}")
    print("\ntimings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in res.timings_s.items()))


if __name__ == "__main__":
    if "--curve" in sys.argv:
        sys.argv.remove("--curve")
        sys.path.insert(0, str(ROOT / "bench"))
        from learning_curve import main as curve

        curve()
        raise SystemExit(0)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", type=Path, default=ROOT / "build" / "small-models")
    ap.add_argument("--dpo-steps", type=int, default=None)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    asyncio.run(main(a.models, a.dpo_steps))

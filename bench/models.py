"""Model-actor benchmark (CPU): decode tokens/s and time to first token.

Run from the repository root:

    .venv/bin/python bench/models.py                 # the real small model (SmolLM2-135M), median of 5
    .venv/bin/python bench/models.py --tiny          # the tiny models
    .venv/bin/python bench/models.py --quick         # median of 2

Small model (builds build/small-models when absent). Rows, each a ratio to the baseline of its
group, measured in the same run; llama.cpp (llama-cpp-python on the same GGUF) is a row when
it is installed (see bench/RESULTS.md for the portable build):
  phi3   GenAI int4 in-process, greedy, unguided (baseline) | the phi3 actor over NATS
         (osiris.phi3.complete) | llama.cpp Q4_1
  hermes transformers fp32 in-process (baseline) | the hermes actor over NATS | llama.cpp Q4_1
  ttft   time to first token: one-token requests (phi3), first streamed chunk (hermes)

Tiny models (`--tiny`), rows:
  phi3   torch greedy on the tiny Phi-3 (baseline) | ONNX fp32 (GenAI) greedy | ONNX int4 |
         GenAI JSON-schema guided vs unguided (same model, same prompt)
  hermes torch greedy in-process (baseline) | through the hermes actor over NATS | GPTQ 4-bit
  first token: in-process streamer (baseline) vs first GenerateChunk through NATS
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
ROOT = Path(__file__).resolve().parent.parent
N = 64
PROMPT = "<|user|>\nPropose a trade for NVDA at 131.5 (-2.25%), stop 4%.<|end|>\n<|assistant|>\n"


def median(fn: Any, reps: int) -> float:
    return statistics.median(fn() for _ in range(reps))


def torch_greedy(folder: Path, reps: int) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([tok(PROMPT, add_special_tokens=False)["input_ids"]])
    n = 0

    def once() -> float:
        nonlocal n
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=N,
                                 min_new_tokens=N, do_sample=False)
        n = out.shape[1] - ids.shape[1]
        return time.perf_counter() - t0

    once()
    return median(once, reps), n


def genai(folder: Path, reps: int, schema: str | None) -> tuple[float, int]:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    tok = og.Tokenizer(model)
    ads = og.Adapters(model)
    ads.load(str(folder / "osiris_lora_base.onnx_adapter"), "base")
    ids = tok.encode(PROMPT)
    n = 0

    def once() -> float:
        nonlocal n
        p = og.GeneratorParams(model)
        p.set_search_options(max_length=len(ids) + N, do_sample=False)
        if schema:
            p.set_guidance("json_schema", schema)
        t0 = time.perf_counter()
        g = og.Generator(model, p)
        g.set_active_adapter(ads, "base")
        g.append_tokens(ids)
        k = 0
        while not g.is_done():
            g.generate_next_token()
            k += 1
        n = k
        return time.perf_counter() - t0

    once()
    return median(once, reps), n


async def actor_rows(tiny: Path, reps: int) -> list[tuple[str, str, float, int]]:
    from osiris_contracts.messages import GenerateChunk, GenerateReply
    from osiris_contracts.subjects import HERMES_GENERATE
    from osiris_core.config import load_config
    from osiris_core.nats.bus import Bus, connect
    from osiris_core.nats.server import EmbeddedNats
    from osiris_core.runtime.node import Runtime
    from osiris_core.testing import write_config

    rows: list[tuple[str, str, float, int]] = []
    with tempfile.TemporaryDirectory() as d, EmbeddedNats(Path(d) / "nats") as srv:
        for label, folder in (("hermes actor (NATS)", "hermes"), ("hermes GPTQ actor (NATS)", "hermes-gptq")):
            cfg = load_config(write_config(Path(d) / f"{folder}.toml", srv.url, ["hermes"],
                                           {"hermes": {"model": str(tiny / folder), "device": "cpu",
                                                       "chat_template": False}}))
            rt = Runtime(cfg)
            await rt.start()
            nc = await connect(srv.url)
            bus = Bus(nc)
            try:
                req = {"prompt": PROMPT, "max_length": N}
                await bus.request(HERMES_GENERATE, req, reply_type=GenerateReply, timeout=120)
                times, firsts, n = [], [], 0
                for _ in range(reps):
                    t0 = time.perf_counter()
                    r = await bus.request(HERMES_GENERATE, req, reply_type=GenerateReply, timeout=120)
                    times.append(time.perf_counter() - t0)
                    n = (r.usage or {}).get("completion_tokens", 0)
                    if folder == "hermes":
                        t0 = time.perf_counter()
                        first: float | None = None
                        async for _chunk in bus.stream(HERMES_GENERATE, {**req, "stream": True},
                                                       item_type=GenerateChunk, timeout=120):
                            if first is None:
                                first = time.perf_counter() - t0
                        firsts.append(first or 0.0)
                rows.append(("hermes", label, statistics.median(times), n))
                if firsts:
                    rows.append(("first token", "hermes actor, first chunk via NATS",
                                 statistics.median(firsts), 1))
            finally:
                await nc.close()
                await rt.stop()
    return rows


def first_token_in_process(folder: Path, reps: int) -> float:
    """Baseline: the same engine in-process, time until its streamer sees the first token."""
    import threading

    from osiris_hermes.engine import HermesEngine

    e = HermesEngine(str(folder), "cpu")
    e.load()
    ids = e.encode_prompt(PROMPT, chat=False, system="", limit=4096)

    def once() -> float:
        first: list[float] = []
        t0 = time.perf_counter()
        e.generate(ids, max_new_tokens=N, temperature=None, top_p=None,
                   on_token=lambda t: first.append(time.perf_counter() - t0) if not first else None,
                   stop_flag=threading.Event())
        return first[0]

    once()
    return median(once, reps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="the tiny models instead of the small one")
    args = ap.parse_args()
    reps = 2 if args.quick else 5
    sys.path.insert(0, str(ROOT))
    if not args.tiny:
        from small_models import main as small_main

        small_main(reps)
        return
    from osiris_models import build_tiny
    from osiris_phi3.schema import SCHEMA_JSON

    tiny = build_tiny(ROOT / "build" / "tiny-models")
    rows: list[tuple[str, str, float, int]] = []
    t, n = torch_greedy(tiny / "phi3", reps)
    rows.append(("phi3", "torch greedy (baseline)", t, n))
    for label, folder in (("ONNX fp32 GenAI greedy", "phi3-onnx"), ("ONNX int4 GenAI greedy", "phi3-onnx-int4")):
        t, n = genai(tiny / folder, reps, None)
        rows.append(("phi3", label, t, n))
    t, n = genai(tiny / "phi3-onnx", reps, None)
    rows.append(("guidance", "GenAI unguided (baseline)", t, n))
    t, n = genai(tiny / "phi3-onnx", reps, SCHEMA_JSON)
    rows.append(("guidance", "GenAI JSON-schema guided", t, n))
    t, n = torch_greedy(tiny / "hermes", reps)
    rows.append(("hermes", "torch greedy in-process (baseline)", t, n))
    ft = first_token_in_process(tiny / "hermes", reps)
    rows.append(("first token", "in-process streamer (baseline)", ft, 1))
    rows += asyncio.run(actor_rows(tiny, reps))

    order = ["phi3", "guidance", "hermes", "first token"]
    rows.sort(key=lambda r: order.index(r[0]))
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, tiny models "
          f"(hidden 64, 2 layers, vocab 1024), {N} new tokens, median of {reps}")
    print(f"{'group':<12} {'path':<36} {'ms':>9} {'tokens':>7} {'tok/s':>9} {'vs base':>8}")
    print("-" * 86)
    base: dict[str, float] = {}
    for group, label, t, n in rows:
        if group == "first token":
            base.setdefault(group, t)
            ratio = t / base[group]  # latency: lower is better
            print(f"{group:<12} {label:<36} {t * 1e3:9.2f} {'':>7} {'':>9} {ratio:7.2f}x")
            continue
        rate = n / t
        base.setdefault(group, rate)
        print(f"{group:<12} {label:<36} {t * 1e3:9.1f} {n:7d} {rate:9.0f} {rate / base[group]:7.2f}x")
    print("\ntok/s ratios: higher is faster; first-token ratio: latency vs in-process (lower is better)")


if __name__ == "__main__":
    main()

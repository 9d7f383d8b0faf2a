"""The small-model half of `bench/models.py`: SmolLM2-135M-Instruct through phi3 and hermes,
over NATS vs the same engine in-process, and llama.cpp on the same GGUF, side by side.

Every path decodes greedily from the same chat prompt, up to N new tokens or the end of
the answer; tok/s is new tokens over wall time, prompt processing included (what a caller
waits for).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 128
SYSTEM = "You are a careful risk analyst."
USER = ("Assess this trade proposal in plain English (risks, sizing, timing): NVDA LONG, "
        "stop 2%, target 6%, after a 3% breakout on volume.")
Row = tuple[str, str, float, int]


def _chatml() -> str:
    from osiris_phi3.prompt import chat_prompt

    return chat_prompt(SYSTEM, USER, "chatml")


def phi3_in_process(folder: Path, reps: int) -> tuple[Row, Row]:
    from osiris_phi3.engine import Phi3Engine

    e = Phi3Engine(folder, "cpu")
    e.load()
    ids = e.encode(_chatml(), N)

    def run(n: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        out, _ = e.generate(ids, max_new=n, schema=None, adapter=None)
        return time.perf_counter() - t0, len(out)

    n = run(N)[1]
    t = statistics.median(run(N)[0] for _ in range(reps))
    ft = statistics.median(run(1)[0] for _ in range(reps))
    return ("phi3", "GenAI int4 in-process (baseline)", t, n), ("ttft", "phi3 in-process (baseline)", ft, 1)


def hermes_in_process(folder: Path, reps: int) -> tuple[Row, Row]:
    from osiris_hermes.engine import HermesEngine

    e = HermesEngine(str(folder), "cpu")
    e.load()
    ids = e.encode_prompt(USER, chat=True, system=SYSTEM, limit=4096)
    n = 0

    def run() -> tuple[float, float]:
        nonlocal n
        first: list[float] = []
        t0 = time.perf_counter()
        out = e.generate(ids, max_new_tokens=N, temperature=None, top_p=None,
                         on_token=lambda _t: first.append(time.perf_counter() - t0) if not first else None,
                         stop_flag=threading.Event(), repetition_penalty=1.1, no_repeat_ngram_size=4)
        n = len(out)
        return time.perf_counter() - t0, first[0]

    run()
    runs = [run() for _ in range(reps)]
    return (("hermes", "transformers fp32 in-process (baseline)", statistics.median(r[0] for r in runs), n),
            ("ttft", "hermes in-process streamer (baseline)", statistics.median(r[1] for r in runs), 1))


def llama_cpp_rows(gguf: Path, reps: int) -> list[Row]:
    try:
        from llama_cpp import Llama
    except ImportError:
        print("llama-cpp-python is not installed: no llama.cpp rows (see bench/RESULTS.md)")
        return []
    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=os.cpu_count() or 2, verbose=False,
                seed=0)
    prompt = _chatml()

    def run(n: int) -> tuple[float, float, int]:
        first: float | None = None
        k = 0
        t0 = time.perf_counter()
        for _ in llm.create_completion(prompt, max_tokens=n, temperature=0.0, stream=True,
                                       repeat_penalty=1.0):
            k += 1
            if first is None:
                first = time.perf_counter() - t0
        return time.perf_counter() - t0, first or 0.0, k

    llm.reset()
    run(N)
    runs = []
    for _ in range(reps):
        llm.reset()  # no prompt cache between runs: every path processes its prompt
        runs.append(run(N))
    t = statistics.median(r[0] for r in runs)
    ft = statistics.median(r[1] for r in runs)
    n = runs[-1][2]
    return [("phi3", "llama.cpp Q4_1 (same GGUF)", t, n), ("hermes", "llama.cpp Q4_1 (same GGUF)", t, n),
            ("ttft", "llama.cpp Q4_1 first token", ft, 1)]


async def actor_rows(root: Path, reps: int) -> list[Row]:
    from osiris_phi3.contracts import PHI3_COMPLETE, Phi3Completion

    from osiris_contracts.messages import GenerateChunk, GenerateReply
    from osiris_contracts.subjects import HERMES_GENERATE
    from osiris_core.config import load_config
    from osiris_core.nats.bus import Bus, connect
    from osiris_core.nats.server import EmbeddedNats
    from osiris_core.runtime.node import Runtime
    from osiris_core.testing import write_config

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d, EmbeddedNats(Path(d) / "nats") as srv:
        cfg = load_config(write_config(Path(d) / "osiris.toml", srv.url, ["phi3", "hermes"], {
            "phi3": {"model": str(root / "small-onnx"), "provider": "cpu"},
            "hermes": {"model": str(root / "small"), "device": "cpu", "system_prompt": SYSTEM}}))
        rt = Runtime(cfg)
        await rt.start()
        nc = await connect(srv.url)
        bus = Bus(nc)
        try:
            async def phi3(n: int) -> tuple[float, int]:
                t0 = time.perf_counter()
                r = await bus.request(PHI3_COMPLETE, {"prompt": _chatml(), "max_length": n},
                                      reply_type=Phi3Completion, timeout=120)
                return time.perf_counter() - t0, len(r.token_ids)

            await phi3(N)
            runs = [await phi3(N) for _ in range(reps)]
            rows.append(("phi3", "phi3 actor over NATS", statistics.median(r[0] for r in runs), runs[-1][1]))
            rows.append(("ttft", "phi3 actor, 1-token request",
                         statistics.median([(await phi3(1))[0] for _ in range(reps)]), 1))

            req = {"prompt": USER, "max_length": N}
            await bus.request(HERMES_GENERATE, req, reply_type=GenerateReply, timeout=120)
            plain = []
            for _ in range(reps):
                t0 = time.perf_counter()
                r = await bus.request(HERMES_GENERATE, req, reply_type=GenerateReply, timeout=120)
                plain.append(time.perf_counter() - t0)
            rows.append(("hermes", "hermes actor over NATS", statistics.median(plain),
                         (r.usage or {}).get("completion_tokens", 0)))
            times, firsts, n = [], [], 0
            for _ in range(reps):
                t0 = time.perf_counter()
                first: float | None = None
                async for c in bus.stream(HERMES_GENERATE, {**req, "stream": True},
                                          item_type=GenerateChunk, timeout=120):
                    if first is None:
                        first = time.perf_counter() - t0
                    if c.done:
                        n = (c.usage or {}).get("completion_tokens", 0)
                times.append(time.perf_counter() - t0)
                firsts.append(first or 0.0)
            rows.append(("hermes", "hermes actor over NATS (streamed)", statistics.median(times), n))
            rows.append(("ttft", "hermes actor, first chunk via NATS", statistics.median(firsts), 1))
        finally:
            await nc.close()
            await rt.stop()
    return rows


def main(reps: int) -> None:
    from osiris_models import build_small
    from osiris_models.small import gguf_path

    root = build_small(ROOT / "build" / "small-models", progress=lambda m: print(f"models: {m}"))
    rows: list[Row] = []
    p, pt = phi3_in_process(root / "small-onnx", reps)
    h, ht = hermes_in_process(root / "small", reps)
    rows += [p, h, pt, ht]
    rows += asyncio.run(actor_rows(root, reps))
    rows += llama_cpp_rows(gguf_path(), reps)
    order = ["phi3", "hermes", "ttft"]
    rows.sort(key=lambda r: order.index(r[0]))
    print(f"\n{time.strftime('%Y-%m-%d')} · python {platform.python_version()}, {os.cpu_count()} cpus · "
          f"SmolLM2-135M-Instruct · {N} new tokens, greedy, median of {reps}")
    print(f"{'group':<7} {'path':<42} {'ms':>9} {'tokens':>7} {'tok/s':>8} {'vs base':>8}")
    print("-" * 86)
    base: dict[str, float] = {}
    for group, label, t, n in rows:
        if group == "ttft":
            key = "ttft-phi3" if "phi3" in label else "ttft-hermes" if "hermes" in label else ""
            base.setdefault(key, t)
            ratio = f"{t / base[key]:7.2f}x" if key else ""
            print(f"{group:<7} {label:<42} {t * 1e3:9.1f} {'':>7} {'':>8} {ratio:>8}")
            continue
        rate = n / t
        base.setdefault(group, rate)
        print(f"{group:<7} {label:<42} {t * 1e3:9.1f} {n:7d} {rate:8.1f} {rate / base[group]:7.2f}x")
    print("\ntok/s ratios: higher is faster; ttft ratios: latency vs the same engine in-process "
          "(lower is better)")


if __name__ == "__main__":
    main(5)

"""hermes batched generation benchmark: B prompts generated one at a time (baseline) vs as
batches of up to B rows (`HermesEngine.generate_batch`, what the actor runs when requests
wait for the model), through the production loader and engine.

Run from the repository root:

    .venv/bin/python bench/hermes_batch.py                       # the tiny hermes, CPU
    .venv/bin/python bench/hermes_batch.py --model PATH          # any hermes model folder
    python3 bench/hermes_batch.py --random-llama 8b --device cuda   # a GPU (device machine)

`--random-llama 0.4b|1b|8b` builds a random-weight Llama of that shape in fp16 (8b: the
Llama-3-8B / Hermes-3 shape with the tiny tokenizer's vocabulary) under `--work-dir`, saves
it and loads it back through `HermesEngine`: the generation cost of an 8B model on that
device, without weights to download. Greedy decoding, every row runs to `--new-tokens`
(no end token is allowed to end a row early, so each mode generates the same token count).

Per mode: wall seconds for all prompts, generated tokens per second and the ratio to the
baseline. "same text" compares each batched row's tokens with its lone run: identical on
CPU fp32 in the actor's tests (tiny model); on a GPU in fp16 a batch runs other kernels than
a lone row and a near-tie between two tokens can go the other way, so this counts it.

The ratio is an upper bound for the actor: here every batch is full and every row runs to
the same length, while under real load batches are partly full and a finished row is
computed on until its batch's longest row ends.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent

PROMPTS = [
    "Assess this proposal: AAPL LONG, stop 3%, target 9%.",
    "Assess NVDA",
    "Short TSLA now? The market looks weak after the earnings call.",
    "Hi",
    "Why would a desk cut MSFT exposure before the Fed?",
    "Rate this: GOOG LONG, stop 2%, target 5%.",
    "What does a flat yield curve mean for bank stocks this quarter?",
    "AMZN broke its 200-day average on volume. Continuation or trap?",
]
SHAPES = {  # hidden, intermediate, layers, heads, kv heads
    "0.4b": (2048, 5632, 8, 16, 16),
    "1b": (2048, 8192, 16, 32, 8),
    "8b": (4096, 14336, 32, 32, 8),
}


def random_llama(shape: str, tokenizer_dir: Path, out: Path) -> Path:
    """A random Llama of `shape` in fp16 with the tiny tokenizer, saved to `out`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (out / "config.json").is_file() and any(out.glob("*.safetensors")) \
            and not any(out.glob("*.tmp*")):
        return out  # built by an earlier run (a save cut short has no weights yet)
    hidden, inter, layers, heads, kv = SHAPES[shape]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv, max_position_embeddings=4096,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(cfg).half()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def tiny_hermes() -> Path:
    sys.path.insert(0, str(ROOT / "plugins" / "models"))
    from osiris_models.tiny import build_tiny, is_complete

    root = Path(os.environ.get("OSIRIS_TINY_MODELS") or ROOT / "build" / "tiny-models")
    if not is_complete(root):
        build_tiny(root, progress=lambda m: print(f"tiny-models: {m}", flush=True))
    return root / "hermes"


def run(engine: Any, prompts: list[list[int]], new_tokens: int, batch: int) -> tuple[float,
                                                                                      list[Any]]:
    from osiris_hermes.engine import Row

    rows = [Row(ids, new_tokens, threading.Event()) for ids in prompts]
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        engine.generate_batch(rows[i:i + batch], temperature=None, top_p=None)
    _sync(engine)
    return time.perf_counter() - t0, rows


def _sync(engine: Any) -> None:
    if str(engine.device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a hermes model folder (default: the tiny hermes)")
    ap.add_argument("--random-llama", choices=sorted(SHAPES), help="build a random fp16 Llama")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=8, help="rows per batch (default 8)")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per mode (default 16)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the median is shown")
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "osiris-bench")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "plugins" / "hermes"))
    from osiris_hermes.engine import HermesEngine

    args.work_dir.mkdir(parents=True, exist_ok=True)
    tiny = tiny_hermes()
    t0 = time.perf_counter()
    if args.random_llama:
        model = random_llama(args.random_llama, tiny, args.work_dir / f"llama-{args.random_llama}")
        label = f"random Llama {args.random_llama} fp16"
    else:
        model = Path(args.model) if args.model else tiny
        label = str(model)
    built = time.perf_counter() - t0
    engine = HermesEngine(str(model), device=args.device)
    engine.load()
    # every row runs to --new-tokens (no end token ends one early): equal work per mode
    engine.eos_ids = lambda: set()
    engine.model.generation_config.eos_token_id = None
    tok = engine.tokenizer
    prompts = [tok(PROMPTS[i % len(PROMPTS)])["input_ids"] for i in range(args.prompts)]
    params = sum(p.numel() for p in engine.model.parameters())
    print(f"model: {label}, {params / 1e9:.2f}B parameters, device {engine.device}, "
          f"dtype {next(engine.model.parameters()).dtype}; built {built:.1f}s, "
          f"loaded {engine.load_s:.1f}s")
    for b in (1, args.batch):  # warm-up: each batch shape once (kernels, caches, allocator)
        run(engine, prompts[:b], args.new_tokens, b)
    lone_s, batched_s = [], []
    lone_rows: list[Any] = []
    batched_rows: list[Any] = []
    for _ in range(args.repeat):  # alternate, so both see the same load
        s, lone_rows = run(engine, prompts, args.new_tokens, 1)
        lone_s.append(s)
        s, batched_rows = run(engine, prompts, args.new_tokens, args.batch)
        batched_s.append(s)
    tokens = sum(len(r.out) for r in lone_rows)
    assert tokens == sum(len(r.out) for r in batched_rows) == args.prompts * args.new_tokens
    pairs = list(zip(lone_rows, batched_rows, strict=True))
    same = sum(a.out == b.out for a, b in pairs)
    first_diff = [next(i for i, (x, y) in enumerate(zip(a.out, b.out, strict=True)) if x != y)
                  for a, b in pairs if a.out != b.out]
    lone, batched = statistics.median(lone_s), statistics.median(batched_s)
    print(f"{args.prompts} prompts x {args.new_tokens} new tokens, greedy, median of "
          f"{args.repeat}; {platform.node()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}")
    print(f"{'mode':<22}{'wall s':>9}{'tokens/s':>11}{'ratio':>8}")
    print(f"{'one at a time':<22}{lone:>9.2f}{tokens / lone:>11.1f}{1.0:>8.2f}")
    print(f"{f'batches of {args.batch}':<22}{batched:>9.2f}{tokens / batched:>11.1f}"
          f"{lone / batched:>8.2f}")
    where = (f"; the others first differ at token {min(first_diff)} to {max(first_diff)} "
             f"(of {args.new_tokens})" if first_diff else "")
    print(f"same text as the lone run: {same}/{args.prompts} rows{where}")


if __name__ == "__main__":
    main()

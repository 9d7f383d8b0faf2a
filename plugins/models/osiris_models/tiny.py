"""`osiris models tiny DIR`: the tiny models, built deterministically and offline.

Layout (each step writes to a temporary folder and renames it, so a killed build resumes)::

    DIR/hermes/                 tiny Llama-family causal LM, Hugging Face format (ChatML)
    DIR/hermes-gptq/            the same, 4-bit GPTQ (gptqmodel, TheBloke-style v1 layout)
    DIR/hermes-adapters/a, b    PEFT LoRA adapters for hermes
    DIR/phi3/                   tiny Phi-3, Hugging Face format (the trainer's base)
    DIR/phi3-adapters/a, b      PEFT LoRA adapters for it, and a.onnx_adapter, b.onnx_adapter
    DIR/phi3-onnx/              its ONNX Runtime GenAI folder, fp32, LoRA weights as inputs
    DIR/phi3-onnx-int4/         the same in int4 (LoRA MatMuls kept in float), like production
    DIR/tiny.json               the manifest: recipe version and the steps done
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .recipe import Progress, Recipe, Step, staged

RECIPE = 5  # bump when any step below changes what it writes
SEED = 1234

# what the tiny models look like (hidden 64, 2 layers: ~1k tok/s greedy in torch on CPU)
HIDDEN, LAYERS, HEADS, INTERMEDIATE, CONTEXT = 64, 2, 4, 128, 4096
# larger than the usual 0.02: sharper logits, so greedy decoding has no near-ties that float
# rounding could flip between torch and ONNX Runtime
INIT_RANGE = 0.2
PHI3_LORA_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
LLAMA_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _seed() -> None:
    import random

    import numpy as np
    import torch

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)


# --- steps ------------------------------------------------------------------------------
def step_tokenizer(root: Path) -> None:
    from .tokenizer import train_tokenizer

    with staged(root / "tokenizer") as tmp:
        train_tokenizer().save(str(tmp / "tokenizer.json"))  # type: ignore[attr-defined]


def _load_tok(root: Path) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(root / "tokenizer" / "tokenizer.json"))


def step_hermes(root: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from .tokenizer import BOS, CHATML_TEMPLATE, PAD, VOCAB_SIZE

    tok = _load_tok(root)
    _seed()
    eos = "<|im_end|>"
    cfg = LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS // 2,
        max_position_embeddings=CONTEXT, initializer_range=INIT_RANGE,
        bos_token_id=tok.token_to_id(BOS), eos_token_id=tok.token_to_id(eos),
        pad_token_id=tok.token_to_id(PAD), tie_word_embeddings=False, dtype="float32",
    )
    model = LlamaForCausalLM(cfg).eval().to(torch.float32)
    with staged(root / "hermes") as tmp:
        model.save_pretrained(tmp)
        GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                         pad_token_id=cfg.pad_token_id, do_sample=False).save_pretrained(tmp)
        from .tokenizer import save_tokenizer

        save_tokenizer(tok, tmp, chat_template=CHATML_TEMPLATE, eos=eos)


def step_hermes_gptq(root: Path) -> None:
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from gptqmodel import GPTQModel, QuantizeConfig
    from transformers import AutoTokenizer

    from .corpus import sentences

    src = root / "hermes"
    tok = AutoTokenizer.from_pretrained(src)
    calib = [list(tok(s)["input_ids"]) for s in sentences(64, seed=7)]
    _seed()
    sink = io.StringIO()
    with staged(root / "hermes-gptq") as tmp, redirect_stdout(sink), redirect_stderr(sink):
        qcfg = QuantizeConfig(bits=4, group_size=32, desc_act=False, sym=True, format="gptq")
        model = GPTQModel.load(str(src), qcfg, device="cpu")
        model.quantize(calib, batch_size=8)
        model.save(str(tmp))
        tok.save_pretrained(tmp)


def _lora(model: Any, targets: list[str], seed: int, rank: int = 4) -> Any:
    """A PEFT LoRA with random (non-zero) B, so the adapter visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                            target_modules=targets, init_lora_weights=True))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    return peft


def step_hermes_adapters(root: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = root / "hermes-adapters"
    with staged(out) as tmp:
        for i, name in enumerate(("a", "b")):
            base = AutoModelForCausalLM.from_pretrained(root / "hermes")
            _lora(base, LLAMA_LORA_TARGETS, SEED + i).save_pretrained(tmp / name)


def step_phi3(root: Path) -> None:
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    from .tokenizer import BOS, PAD, PHI3_TEMPLATE, VOCAB_SIZE, save_tokenizer

    tok = _load_tok(root)
    _seed()
    eos = "<|end|>"
    cfg = Phi3Config(
        vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
        max_position_embeddings=CONTEXT, original_max_position_embeddings=CONTEXT,
        initializer_range=INIT_RANGE, bos_token_id=tok.token_to_id(BOS),
        eos_token_id=tok.token_to_id(eos), pad_token_id=tok.token_to_id(PAD),
        tie_word_embeddings=False, dtype="float32",
    )
    model = Phi3ForCausalLM(cfg).eval().to(torch.float32)
    with staged(root / "phi3") as tmp:
        model.save_pretrained(tmp)
        GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                         pad_token_id=cfg.pad_token_id, do_sample=False).save_pretrained(tmp)
        save_tokenizer(tok, tmp, chat_template=PHI3_TEMPLATE, eos=eos)


def step_phi3_adapters(root: Path) -> None:
    from transformers import AutoModelForCausalLM

    with staged(root / "phi3-adapters") as tmp:
        for i, name in enumerate(("a", "b")):
            base = AutoModelForCausalLM.from_pretrained(root / "phi3")
            _lora(base, PHI3_LORA_TARGETS, SEED + 10 + i).save_pretrained(tmp / name)


def step_phi3_onnx(root: Path) -> None:
    from .onnx_lora import build_genai_with_lora

    build_genai_with_lora(root / "phi3", root / "phi3-adapters" / "a", root / "phi3-onnx", "fp32")


def step_phi3_onnx_adapters(root: Path) -> None:
    from .onnx_lora import export_onnx_adapter

    for name in ("a", "b"):
        export_onnx_adapter(root / "phi3", root / "phi3-adapters" / name,
                            root / "phi3-adapters" / f"{name}.onnx_adapter")


def step_phi3_onnx_int4(root: Path) -> None:
    from .onnx_lora import build_genai_with_lora

    build_genai_with_lora(root / "phi3", root / "phi3-adapters" / "a", root / "phi3-onnx-int4",
                          "int4")


STEPS: list[Step] = [
    ("tokenizer", step_tokenizer),
    ("hermes", step_hermes),
    ("hermes-gptq", step_hermes_gptq),
    ("hermes-adapters", step_hermes_adapters),
    ("phi3", step_phi3),
    ("phi3-adapters", step_phi3_adapters),
    ("phi3-onnx", step_phi3_onnx),
    ("phi3-onnx-adapters", step_phi3_onnx_adapters),
    ("phi3-onnx-int4", step_phi3_onnx_int4),
]
OUTPUTS = ["tokenizer", "hermes", "hermes-gptq", "hermes-adapters", "phi3", "phi3-adapters",
           "phi3-onnx", "phi3-adapters/a.onnx_adapter", "phi3-onnx-int4"]


TINY = Recipe("tiny", RECIPE, STEPS, OUTPUTS)


def is_complete(root: Path) -> bool:
    """True when `root` holds every tiny output (built with any library versions)."""
    return TINY.is_complete(root)


def build_tiny(root: Path | str, progress: Progress | None = None, force: bool = False) -> Path:
    """Build every tiny model under `root` (a no-op when it is up to date) → `root`."""
    return TINY.build(root, progress, force)

"""Parity of the served path with the trainer's on the real small model: what the trainer
learns must be what phi3 serves. GenAI must tokenise the house prompts and corrections as
Hugging Face does, GenAI fp32 with the exported adapter must give PEFT's logits, and what
int4 (the demo's served precision) does to an adapter's effect is measured and bounded.
Real-model tier (`-m small`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [
    pytest.mark.small,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]


def _texts() -> list[tuple[str, str]]:
    """(served prompt, correction JSON) for every house situation, both policies."""
    from osiris_phi3.config import DEFAULT_SYSTEM
    from osiris_phi3.prompt import chat_prompt
    from osiris_trainer.houseset import POLICIES, load_rows

    out = []
    for rows in [load_rows(), *(load_rows(policy=p) for p in POLICIES)]:
        for r in rows:
            out.append((chat_prompt(DEFAULT_SYSTEM, r["prompt"], "chatml"),
                        json.dumps(r["correction"], separators=(",", ":"))))
    return out


def test_genai_tokenises_the_house_set_as_hugging_face(small_models: Path) -> None:
    import onnxruntime_genai as og
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(small_models / "small")
    og_tok = og.Tokenizer(og.Model(str(small_models / "small-onnx")))
    texts = _texts()
    assert len(texts) > 1000
    bad = []
    for prompt, correction in texts:
        for text in (prompt, correction, prompt + correction):
            want = hf(text, add_special_tokens=False)["input_ids"]
            if [int(t) for t in og_tok.encode(text)] != want:
                bad.append(text[-80:])
    assert not bad, f"{len(bad)} of {3 * len(texts)} differ, e.g. {bad[:2]}"


@pytest.fixture(scope="module")
def random_adapter(small_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PEFT LoRA on every projection with random A and B (a trained adapter's shape with
    an effect everywhere), saved as a PEFT folder."""
    import torch
    from osiris_models.small import LORA_TARGETS
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(small_models / "small", dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS,
                                            init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(0.02)  # an effect the size a few hundred steps of training leave
    out = tmp_path_factory.mktemp("lora") / "peft"
    peft.save_pretrained(out)
    return out


def _hf_logits(small: Path, peft_dir: Path | None, ids: list[int],
               served: Path | None = None) -> np.ndarray:
    import torch
    from osiris_models.served_weights import load_served_weights
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(small, dtype=torch.float32)
    if served is not None:
        load_served_weights(model, served)
    if peft_dir is not None:
        model = PeftModel.from_pretrained(model, str(peft_dir))
    with torch.no_grad():
        return np.asarray(model.eval()(input_ids=torch.tensor([ids])).logits[0].float())


def _genai_logits(folder: Path, adapter: Path | None, ids: list[int]) -> np.ndarray:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 1)
    gen = og.Generator(model, params)
    adapters = og.Adapters(model)
    adapters.load(str(adapter or folder / "osiris_lora_base.onnx_adapter"), "a")
    gen.set_active_adapter(adapters, "a")
    gen.append_tokens(ids)
    return np.asarray(gen.get_output("logits"))[0]


def _sequence(small: Path) -> tuple[list[int], list[int]]:
    """A served prompt with its correction as token ids, and the positions whose next token
    is a decision (the action and side words, the stop and target numbers)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(small / "small")
    prompt, correction = _texts()[-1]
    ids = tok(prompt + correction, add_special_tokens=False)["input_ids"]
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    decisions = []
    for key in ('"action":"', '"side":"', '"new_stop_pct":', '"new_target_pct":'):
        head = prompt + correction[:correction.index(key) + len(key)]
        decisions.append(len(tok(head, add_special_tokens=False)["input_ids"]) - 1)
    assert all(n_prompt <= d < len(ids) for d in decisions)
    return ids, decisions


def test_genai_fp32_with_the_exported_adapter_gives_pefts_logits(
        small_models: Path, random_adapter: Path, tmp_path: Path) -> None:
    from osiris_models.onnx_lora import build_genai_with_lora, export_onnx_adapter

    fp32 = tmp_path / "small-onnx-fp32"
    build_genai_with_lora(small_models / "small", random_adapter, fp32, "fp32")
    file = export_onnx_adapter(small_models / "small", random_adapter, tmp_path / "a.onnx_adapter",
                               "fp32")
    ids, _ = _sequence(small_models)
    want = _hf_logits(small_models / "small", random_adapter, ids)
    got = _genai_logits(fp32, file, ids)
    base = _hf_logits(small_models / "small", None, ids)
    assert np.abs(want - base).max() > 0.5  # the adapter really changes the logits
    assert np.abs(got - want).max() < 1e-3


def test_the_served_int4_folder_computes_what_the_trainer_trains_on(
        small_models: Path, random_adapter: Path, tmp_path: Path) -> None:
    """The served int4 folder with an adapter against the trainer's copy with the same
    adapter: over the fp32 weights the folder was built from, and over the folder's own
    weights read back (`served_weights`, what the trainer trains on). With the served folder's
    fp32 activations the adapter's effect (adapter − base logits) is reproduced exactly; a
    folder with the CPU default (int8 activations, built here) drowns it. The numbers are
    printed: they are what int4 costs an adapter, and why the folder is built as it is."""
    from osiris_models.onnx_lora import build_genai_with_lora, export_onnx_adapter

    file = export_onnx_adapter(small_models / "small", random_adapter, tmp_path / "a.onnx_adapter",
                               "int4")
    int8_act = tmp_path / "int4-int8-activations"
    build_genai_with_lora(small_models / "small", random_adapter, int8_act, "int4")
    ids, decisions = _sequence(small_models)
    seen: dict[str, tuple[float, float, float]] = {}
    for label, folder, served in (
            ("served folder vs fp32 weights", small_models / "small-onnx", None),
            ("served folder vs served weights", small_models / "small-onnx",
             small_models / "small-onnx"),
            ("int8-activation folder vs its weights", int8_act, int8_act)):
        og_a, og_b = _genai_logits(folder, file, ids), _genai_logits(folder, None, ids)
        hf_a = _hf_logits(small_models / "small", random_adapter, ids, served)
        hf_b = _hf_logits(small_models / "small", None, ids, served)
        e_og, e_hf = (og_a - og_b).ravel(), (hf_a - hf_b).ravel()
        cosine = float(e_hf @ e_og / (np.linalg.norm(e_hf) * np.linalg.norm(e_og)))
        at_decisions = float(np.mean(hf_a.argmax(-1)[decisions] == og_a.argmax(-1)[decisions]))
        everywhere = float(np.mean(hf_a.argmax(-1) == og_a.argmax(-1)))
        seen[label] = (cosine, at_decisions, everywhere)
        print(f"\n  {label}: adapter-effect cosine {cosine:.3f}, argmax agreement "
              f"{at_decisions:.0%} at the {len(decisions)} decision positions, {everywhere:.0%} "
              f"at all {len(ids)} positions, max |Δlogit| {np.abs(og_a - hf_a).max():.3f}")
    cos, at_dec, everywhere = seen["served folder vs served weights"]
    assert cos > 0.999 and at_dec == 1.0 and everywhere > 0.99
    assert seen["served folder vs fp32 weights"][0] < cos
    assert seen["int8-activation folder vs its weights"][0] < 0.9  # why activations stay fp32

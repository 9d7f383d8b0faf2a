"""Which models `osiris demo` runs: the real small model by default, the random tiny ones
with `--tiny`. hermes, phi3 and the trainer ask here, so the three always agree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoModels:
    """The folders and training settings of one model set."""

    kind: str
    """`small` (SmolLM2-135M-Instruct) or `tiny` (random weights, for tests)."""
    hermes: Path
    phi3: Path
    trainer_base: Path
    """The HF folder phi3's GenAI folder was built from: adapters are trained on it."""
    export_precision: str
    target_modules: list[str]


def demo_models(data_dir: Path | str, *, tiny: bool = False,
                progress: Callable[[str], None] | None = None) -> DemoModels:
    """Build (when absent or stale) and describe the demo's models under `<data_dir>/models`."""
    from .builders import build_small, build_tiny, default_tiny_dir

    root = default_tiny_dir(data_dir)
    if tiny:
        from .tiny import PHI3_LORA_TARGETS

        root = build_tiny(root, progress=progress)
        return DemoModels("tiny", root / "hermes", root / "phi3-onnx", root / "phi3", "fp32",
                          list(PHI3_LORA_TARGETS))
    from .small import LORA_TARGETS

    root = build_small(root, progress=progress)
    return DemoModels("small", root / "small", root / "small-onnx", root / "small", "int4",
                      list(LORA_TARGETS))

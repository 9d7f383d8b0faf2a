"""`[plugins.phi3]`: the GenAI folder, provider, guidance retries and few-shot feedback."""

from __future__ import annotations

from typing import Literal

from osiris_core import PluginConfig

DEFAULT_SYSTEM = (
    "You are a trading assistant. Answer with one JSON object with the fields ticker, action, "
    "side (LONG or SHORT), new_stop_pct, new_target_pct, confidence (0 to 1) and rationale."
)


class Phi3Config(PluginConfig, frozen=True, kw_only=True):
    model: str = ""
    """An ONNX Runtime GenAI folder (ours has LoRA inputs). Empty: `<data_dir>/models/phi3-onnx`."""
    provider: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto`: CUDA when this onnxruntime-genai build and the machine have it, else CPU."""
    parallel: int = 1
    """Generations at once on the model; further requests queue (max_concurrency)."""
    max_concurrency: int = 16
    max_new_tokens_cap: int = 1024
    retries: int = 3
    """Extra attempts (sampled) when a guided reply still fails validation."""
    retry_temperature: float = 0.8
    few_shot: int = 3
    """Latest corrected proposals from feedback prepended to the prompt (0: off)."""
    feedback_timeout_s: float = 0.5
    system_prompt: str = DEFAULT_SYSTEM
    adapter: str = ""
    """An `.onnx_adapter` file loaded and activated at start (published adapters win later)."""
    pause_mode: Literal["drop"] = "drop"
    """Pause frees the model (resume reloads it and its adapters)."""

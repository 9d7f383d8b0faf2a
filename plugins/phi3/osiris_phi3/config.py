"""`[plugins.phi3]`: the GenAI folder, provider, guidance retries and few-shot feedback."""

from __future__ import annotations

from typing import Literal

from osiris_core import PluginConfig

from .contracts import MAX_GRAMMAR_CHARS

DEFAULT_SYSTEM = (
    "You are a trading assistant. Read the market summary and answer with one JSON trade "
    "proposal: ticker, action, side (LONG or SHORT), new_stop_pct, new_target_pct, confidence "
    "(0 to 1) and a one-sentence rationale. Example: "
    '{"ticker":"XYZ","action":"hold","side":"LONG","new_stop_pct":1.5,"new_target_pct":3,'
    '"confidence":0.6,"rationale":"Quiet session with no clear trend; keep the position under '
    'a tight stop."}'
)
"""One example in the system prompt: a small model copies its shape and its sense of scale."""


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
    chat_format: Literal["auto", "phi3", "chatml"] = "auto"
    """The prompt markup; `auto` reads the model folder's chat template (ChatML for SmolLM2,
    Phi-3's own otherwise)."""
    temperature: float = 0.0
    """Sampling temperature when a request sets none; 0 decodes greedily (reproducible)."""
    repetition_penalty: float = 1.1
    """> 1 discourages repeating tokens: without it a small model loops inside `rationale`
    ("2.11, 2.11, …") until max_length. 1 turns it off."""
    rationale_max_chars: int = 120
    """Guidance bound on `rationale` (the contract allows 160)."""
    max_stop_pct: float = 10.0
    """Guidance bound on `new_stop_pct` (the contract allows 100): keeps a weak model's
    numbers in a range a trader would read as sensible; the risk gate still decides."""
    max_target_pct: float = 30.0
    """Guidance bound on `new_target_pct` (the contract allows 1000)."""
    ground_ticker: bool = True
    """Constrain `ticker` to the symbols the request's prompt names (when it names any), so a
    small model cannot misspell or invent one."""
    max_grammar_chars: int = 32_768
    """Largest `grammar` an `osiris.phi3.guided` request may send: llguidance compiles it
    per request while holding a generation slot (a 260k-character grammar took 1.4–2 s on
    2 cores)."""
    adapter: str = ""
    """An `.onnx_adapter` file loaded and activated at start (published adapters win later)."""
    pause_mode: Literal["drop"] = "drop"
    """Pause frees the model (resume reloads it and its adapters)."""

    def __post_init__(self) -> None:
        if not 1 <= self.rationale_max_chars <= 160:
            raise ValueError("rationale_max_chars must be 1..160 (the proposal contract's bound)")
        if not 0 < self.max_stop_pct <= 100 or not 0 < self.max_target_pct <= 1000:
            raise ValueError("max_stop_pct must be in (0, 100] and max_target_pct in (0, 1000]")
        if not 1 <= self.max_grammar_chars <= MAX_GRAMMAR_CHARS:
            raise ValueError(f"max_grammar_chars must be 1..{MAX_GRAMMAR_CHARS:,} (the wire's bound)")
        if self.repetition_penalty <= 0 or self.temperature < 0:
            raise ValueError("repetition_penalty must be > 0 and temperature >= 0")

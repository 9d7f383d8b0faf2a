"""`[plugins.hermes]`: which model, where it runs, and how much work it takes at once."""

from __future__ import annotations

from typing import Literal

from osiris_core import PluginConfig


class HermesConfig(PluginConfig, frozen=True, kw_only=True):
    model: str = ""
    """A local Hugging Face folder (fp or GPTQ) or a hub id already in the local cache.
    Empty: `<data_dir>/models/hermes` (where `osiris demo` builds the tiny model)."""
    device: str = "auto"
    """`auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:1` … A device this machine
    does not have fails the load with a 503 naming this key (`osiris_models.device`)."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """`auto`: float16 on CUDA, float32 on CPU (GPTQ checkpoints use their own)."""
    parallel: int = 1
    """Batches that run at once on the model; further requests queue (max_concurrency)."""
    batch_size: int = 8
    """Requests waiting for the model that share sampling settings run as one batch of up to
    this many (one forward pass per step for all); 1 runs them one at a time."""
    max_concurrency: int = 16
    max_prompt_tokens: int = 4096
    """Prompts longer than this (in tokens) get a 400 naming `prompt`."""
    max_new_tokens_cap: int = 2048
    chat_template: bool = True
    """Wrap the prompt as one user turn with the tokenizer's chat template, when it has one."""
    system_prompt: str = ""
    temperature: float = 0.0
    """Sampling temperature when a request sets none; 0 decodes greedily (reproducible)."""
    repetition_penalty: float = 1.1
    """> 1 discourages repeated tokens (a small model otherwise loops); 1 turns it off."""
    no_repeat_ngram_size: int = 4
    """No n-gram of this many tokens is generated twice; 0 turns it off."""
    pause_mode: Literal["auto", "offload", "drop"] = "auto"
    """What pause does with the weights: `offload` moves them to CPU RAM, `drop` frees them
    (resume reloads from disk). `auto`: offload, except drop for quantised models and on CPU."""
    adapters: dict[str, str] = {}
    """PEFT adapters loaded at start: name → folder. `adapter` picks the active one."""
    adapter: str = ""
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.parallel < 1 or self.batch_size < 1:
            raise ValueError("parallel and batch_size must be >= 1")
        if self.temperature < 0 or self.repetition_penalty <= 0 or self.no_repeat_ngram_size < 0:
            raise ValueError("temperature must be >= 0, repetition_penalty > 0 and "
                             "no_repeat_ngram_size >= 0")

"""`[plugins.trainer]`: what to train on, how, when, and the gate a new adapter must pass."""

from __future__ import annotations

from typing import Literal

import msgspec
from osiris_phi3.config import DEFAULT_SYSTEM

from osiris_core import PluginConfig

STOP_TOLERANCE = TARGET_TOLERANCE = 0.2
"""Percentage points within which a stop or target agrees: under half the smallest gap
between two values a house sends (0.5), so no single number is credited for two of them."""


class TrainerConfig(PluginConfig, frozen=True, kw_only=True):
    base_model: str = ""
    """The Hugging Face folder of the Phi-3 that phi3's ONNX folder was built from (tiny:
    `<models>/phi3`). Empty: the trainer idles and says what to set."""
    export_precision: Literal["fp32", "fp16", "int8", "int4"] = "fp32"
    """Precision phi3's GenAI folder was built with (`osiris models tiny`: fp32); the
    `.onnx_adapter` is exported to fit it."""
    export_provider: Literal["cpu", "cuda"] = "cpu"
    served_model: str = ""
    """phi3's GenAI folder (`[plugins.phi3] model`). With an int4/int8 folder and training on
    CPU, the adapter trains over the weights that folder serves, dequantised, instead of the
    fp32 copy: a correction of the fp32 model partly vanishes in int4 (measured: 65 % of
    memorised decisions kept). Empty: train on `base_model` as it is."""
    adapters_dir: str = "adapters"
    """Under `data_dir`: one folder per trained version (PEFT weights, .onnx_adapter, report)."""
    schedule: str = "02:00"
    """Daily training time, HH:MM local time; empty turns the schedule off (`osiris train
    --now` still works)."""
    train_after_corrections: int = 0
    """Also train as soon as this many new corrections arrived (0: only on the schedule and
    on request)."""
    min_examples: int = 4
    """Corrections needed (train + eval) before a run trains at all."""
    max_examples: int = 2000
    """Newest corrections read from the feedback store."""
    eval_fraction: float = 0.25
    """Share of examples held out for the gate (chosen by id, so stable across runs)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    qlora: bool = True
    """On CUDA, load the base model in 4-bit NF4 (bitsandbytes) and train LoRA on top."""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: list[str] = msgspec.field(
        default_factory=lambda: ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"])
    """Must be the modules phi3's ONNX folder exposes as LoRA inputs: the tiny build's
    (Phi-3 names) by default; the small model's are q/k/v/o/gate/up/down_proj
    (`osiris models small` prints them)."""
    top_layers: int = 0
    """On CPU, train only the top this many decoder layers' LoRA (the rest stay zero) over
    the frozen layers' cached output: each step runs those layers alone, several times
    faster on the small model. 0 trains every layer (trl's SFTTrainer; CUDA always does)."""
    decision_weight: float = 1.0
    """With `top_layers`: the SFT loss weight of the tokens that carry the decision values
    (action, side, stop, target) against the rest of the reply, which is mostly format a few
    steps learn; the decisions are what a desk corrects."""
    sft_steps: int = 60
    sft_epochs: float = 0.0
    """When > 0, SFT takes this many passes over the training corrections instead of
    `sft_steps` steps, so a run scales with what it has to learn from."""
    sft_max_steps: int = 0
    """With `sft_epochs`: at most this many steps (0: no cap), so a large correction set
    trains in bounded time; more corrections per step need fewer passes."""
    dpo_steps: int = 20
    """0 skips DPO; otherwise corrections (chosen) vs the original proposals (rejected)."""
    dpo_beta: float = 0.1
    learning_rate: float = 2e-3
    batch_size: int = 4
    max_length: int = 1024
    """Tokens of prompt + completion kept per example."""
    few_shot: int = 3
    """Must equal `[plugins.phi3] few_shot`: phi3 prepends that many recent corrections to
    each prompt, so training prompts carry them too, and the gate scores with them (taken
    from the training corrections, never a held-out one)."""
    system_prompt: str = DEFAULT_SYSTEM
    """Must equal `[plugins.phi3] system_prompt`: the adapter learns the prompt phi3 sends."""
    chat_format: Literal["auto", "phi3", "chatml"] = "auto"
    """Must match phi3's: `auto` reads the base model's chat template."""
    report_few_shot: bool = True
    """Also score few-shot alone (base model, `few_shot` corrections or 3) where phi3 serves,
    for the report; the gate does not use it."""
    report_lab: bool = False
    """Also score the adapter on the trainer's own copy (greedy, unguided): a diagnostic of
    what the served path loses, slow on CPU; the gate never uses it."""
    eval_max_new_tokens: int = 96
    """Tokens each reply may take in the lab diagnostic."""
    repetition_penalty: float = 1.1
    """Decoding of the lab diagnostic's replies (as `[plugins.phi3] repetition_penalty`)."""
    score_timeout_s: float = 600.0
    """How long one `osiris.phi3.score` page (16 held-out prompts) may take."""
    stop_tolerance: float = STOP_TOLERANCE
    """Field agreement: a stop within this many percentage points of the correction's agrees
    (under half the gap between two stops a house sends, or one number would hit both)."""
    target_tolerance: float = TARGET_TOLERANCE
    """Field agreement: the same for the target."""
    pause_while_training: list[str] = msgspec.field(default_factory=list)
    """Actors paused for the run and resumed after (the demo pauses its market, `sim`, so
    training and scoring get the CPU the simulated loop would take)."""
    seed: int = 0
    train_timeout_s: float = 6 * 3600.0
    """How long `osiris train --now` waits for the run."""

    def __post_init__(self) -> None:
        if self.schedule:
            hh, _, mm = self.schedule.partition(":")
            if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
                raise ValueError(f"schedule {self.schedule!r} is not HH:MM (e.g. \"02:00\"; "
                                 "empty turns it off)")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError("eval_fraction must be between 0 and 1")


def settings_for(kind: str, base_model: str, export_precision: str,
                 target_modules: list[str], served_model: str = "") -> dict[str, object]:
    """`[plugins.trainer]` settings that work for a model set of `osiris_models.demo_models`
    (`tiny` or `small`): the demo, the learning benches and the real-model tests use them.

    The small model (SmolLM2-135M, 2 CPU cores) trains over the int4 weights phi3 serves
    (`served_model`), LoRA r=16 on every projection of the top 8 of 30 layers over the frozen
    layers' cached output (a step ~2 s instead of ~15 s), 20 passes over the corrections (at
    most 480 steps) at a learning rate of 3e-3, the decision values' tokens weighted 5×.
    On 30 `momentum` corrections the old 8 passes at 1e-3, unweighted, did not even fit the
    training rows (55 % of their decision fields served); this recipe serves them all and
    73 % [65–82] of 60 held out (best constant 45 %). DPO is off
    there: on CPU it roughly triples a step's cost; it stays on for the tiny models and for
    production (CUDA). Few-shot is off, as the demo's phi3 serves the small model: its
    corrections shown without their situations lowered agreement below the base model."""
    common: dict[str, object] = {"base_model": base_model, "export_precision": export_precision,
                                 "target_modules": list(target_modules), "schedule": "",
                                 "served_model": served_model}
    if kind == "tiny":
        return {**common, "min_examples": 2, "sft_steps": 30, "dpo_steps": 10}
    return {**common, "min_examples": 4, "lora_r": 16, "lora_alpha": 32, "learning_rate": 3e-3,
            "top_layers": 8, "sft_epochs": 20.0, "sft_max_steps": 480, "decision_weight": 5.0,
            "dpo_steps": 0, "batch_size": 4, "few_shot": 0}

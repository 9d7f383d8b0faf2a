"""One training run: LoRA SFT on the corrections, DPO against the original proposals, and
the export to `.onnx_adapter`. Runs inside the job process (`job.py`); the gate scores the
result where phi3 serves (`served.py`)."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osiris_models.device import resolve_device
from osiris_phi3.prompt import chat_prompt, detect_format
from osiris_phi3.serving import decision_of

from . import top_sft
from .config import TrainerConfig
from .dataset import Example
from .evaluate import Scoring, generate, logprob, parse_reply
from .served import wants
from .stats import Scored

Progress = Callable[[str], None]


@dataclass
class Outcome:
    """A trained candidate: its `.onnx_adapter`, training numbers, and the lab row."""

    adapter_file: str
    metrics: dict[str, float] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def load_model(cfg: TrainerConfig, base: Path, device: str) -> tuple[Any, Any]:
    """The base model for training: 4-bit NF4 on CUDA with `qlora` (QLoRA), else full
    precision (fp32 on CPU, bf16 on CUDA) — on CPU with the served folder's quantised
    weights, dequantised, when `served_model` names it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base, local_files_only=True)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    kw: dict[str, Any] = {"local_files_only": True}
    if device == "cuda" and cfg.qlora:
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kw["device_map"] = {"": 0}
        model = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(base, **kw))
    else:
        kw["dtype"] = torch.bfloat16 if device == "cuda" else torch.float32
        # transformers wraps PreTrainedModel.to in a decorator whose type loses `self`
        model = AutoModelForCausalLM.from_pretrained(base, **kw).to(device)  # type: ignore[arg-type]
        if cfg.served_model and device == "cpu":
            from osiris_models.served_weights import load_served_weights

            load_served_weights(model, Path(cfg.served_model))
    return model, tok


def scoring(cfg: TrainerConfig, base: Path) -> Scoring:
    """How held-out replies are produced and compared: phi3's prompt and decoding settings."""
    fmt = detect_format(base) if cfg.chat_format == "auto" else cfg.chat_format
    return Scoring(system=cfg.system_prompt, chat_format=fmt,
                   max_new_tokens=cfg.eval_max_new_tokens,
                   repetition_penalty=cfg.repetition_penalty,
                   stop_tolerance=cfg.stop_tolerance, target_tolerance=cfg.target_tolerance,
                   max_length=cfg.max_length)


def report_shots(cfg: TrainerConfig) -> int:
    """Few-shot corrections in the report's few-shot rows: as phi3 serves (`few_shot`), or
    3 when phi3 serves none, so the report always shows what few-shot alone would do."""
    return cfg.few_shot or 3


def prompt_text(e: Example, s: Scoring) -> str:
    """The full prompt phi3 serves for `e` (its few-shot corrections included)."""
    return chat_prompt(s.system, e.user_text(), s.chat_format)


def _common_args(cfg: TrainerConfig, device: str, out: str, steps: int) -> dict[str, Any]:
    return {"output_dir": out, "max_steps": steps, "per_device_train_batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate, "lr_scheduler_type": "constant",
            "save_strategy": "no", "report_to": "none", "logging_steps": max(1, steps // 5),
            "disable_tqdm": True, "seed": cfg.seed, "use_cpu": device == "cpu",
            "bf16": device == "cuda", "dataloader_num_workers": 0,
            "max_length": cfg.max_length}


def _steps(label: str, say: Progress) -> Any:
    """A transformers callback that says `label step i/n` after every optimiser step: long
    runs on CPU show they move (the CLI keeps it on one updating line)."""
    from transformers import TrainerCallback

    class Steps(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            say(f"{label} step {state.global_step}/{state.max_steps}")

    return Steps()


def sft_steps(cfg: TrainerConfig, n: int) -> int:
    """SFT steps for `n` training corrections: `sft_epochs` passes (at most
    `sft_max_steps` when set), else `sft_steps`."""
    if cfg.sft_epochs > 0:
        steps = max(1, math.ceil(cfg.sft_epochs * n / cfg.batch_size))
        return min(steps, cfg.sft_max_steps) if cfg.sft_max_steps > 0 else steps
    return cfg.sft_steps


def sft(cfg: TrainerConfig, model: Any, tok: Any, train: list[Example], s: Scoring, device: str,
        work: str, say: Progress) -> float:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": prompt_text(e, s),
                               "completion": e.chosen + tok.eos_token}
                              for e in train])
    args = SFTConfig(**_common_args(cfg, device, work, sft_steps(cfg, len(train))),
                     completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                         callbacks=[_steps("SFT", say)])
    result = trainer.train()
    return float(result.training_loss)


def dpo(cfg: TrainerConfig, model: Any, tok: Any, pairs: list[Example], s: Scoring, device: str,
        work: str, say: Progress) -> float:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list([{"prompt": prompt_text(e, s), "chosen": e.chosen,
                               "rejected": e.rejected} for e in pairs])
    args = DPOConfig(**_common_args(cfg, device, work, cfg.dpo_steps), beta=cfg.dpo_beta)
    # a PEFT model with no ref_model: the reference is the same weights with the adapter
    # switched off, so DPO needs no second copy of the model
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=data,
                         processing_class=tok, callbacks=[_steps("DPO", say)])
    result = trainer.train()
    return float(result.training_loss)


def lab_row(model: Any, tok: Any, held: list[Example], s: Scoring, shots: int) -> dict[str, Any]:
    """The model on the trainer's own copy (this precision, greedy, unguided) on the held-out
    corrections: decision fields — read, as the served scorer reads them, from the reply's
    opening even when its tail does not parse — and the corrections' mean per-token
    log-likelihood (what the old lab gate published on). A diagnostic, never the gate."""
    model.eval()
    prompts = [chat_prompt(s.system, e.user_text(shots), s.chat_format) for e in held]
    texts = generate(model, tok, prompts, s)
    got = [parse_reply(t) or decision_of(t[max(t.find("{"), 0):]) for t in texts]
    total, n = 0.0, 0
    for e, p in zip(held, prompts, strict=True):
        lp, k = logprob(model, tok, p, e.chosen, s.max_length)
        total, n = total + lp, n + k
    return {**Scored.of(got, wants(held), stop_tolerance=s.stop_tolerance,
                        target_tolerance=s.target_tolerance).to_dict(),
            "loglik": total / max(n, 1)}


def run(cfg: TrainerConfig, base: Path, train: list[Example], held: list[Example],
        out_dir: Path, version: str, say: Progress) -> Outcome:
    """Train a LoRA adapter (SFT, then DPO where there are pairs), save it and export its
    `.onnx_adapter` into `out_dir` for the gate to score where phi3 serves."""
    import torch
    from peft import LoraConfig, get_peft_model

    phases: dict[str, float] = {}
    t = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        phases[name] = round(now - t, 3)
        t = now

    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device, "[plugins.trainer].device")
    say(f"loading {base} on {device}" + (" (4-bit QLoRA)" if device == "cuda" and cfg.qlora else ""))
    model, tok = load_model(cfg, base, device)
    s = scoring(cfg, base)
    phase("load")
    report: dict[str, Any] = {}
    if cfg.report_lab:
        say(f"scoring the base model on the trainer's copy (diagnostic), {len(held)} held out")
        report["lab_base"] = lab_row(model, tok, held, s, cfg.few_shot)
    peft = get_peft_model(model, LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="osiris-train-") as work:
        say(f"SFT: {len(train)} corrections, {sft_steps(cfg, len(train))} steps")
        if cfg.top_layers and device == "cpu" and top_sft.supports(peft):
            metrics["sft_loss"] = top_sft.train_top_layers(
                peft, tok, [(prompt_text(e, s), e.chosen + tok.eos_token) for e in train],
                layers=cfg.top_layers, steps=sft_steps(cfg, len(train)),
                batch_size=cfg.batch_size,
                learning_rate=cfg.learning_rate, seed=cfg.seed, max_length=cfg.max_length,
                say=say, decision_weight=cfg.decision_weight)
        else:
            metrics["sft_loss"] = sft(cfg, peft, tok, train, s, device, work, say)
        phase("sft")
        pairs = [e for e in train if e.rejected is not None]
        if cfg.dpo_steps > 0 and pairs:
            say(f"DPO: {len(pairs)} pairs (correction vs original), {cfg.dpo_steps} steps")
            metrics["dpo_loss"] = dpo(cfg, peft, tok, pairs, s, device, work, say)
            phase("dpo")
    if cfg.report_lab:
        say(f"scoring the adapter on the trainer's copy (diagnostic), {len(held)} held out")
        report["lab"] = lab_row(peft, tok, held, s, cfg.few_shot)
        phase("lab")
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_dir = out_dir / "peft"
    peft.save_pretrained(str(peft_dir))
    say(f"exporting {version}.onnx_adapter ({cfg.export_precision}, {cfg.export_provider})")
    from osiris_models.onnx_lora import export_onnx_adapter

    file = out_dir / f"{version}.onnx_adapter"
    try:
        export_onnx_adapter(base, peft_dir, file, cfg.export_precision, cfg.export_provider)
    except Exception:
        shutil.rmtree(out_dir, ignore_errors=True)  # no half-written version is left behind
        raise
    phase("export")
    return Outcome(str(file), metrics, phases, report)

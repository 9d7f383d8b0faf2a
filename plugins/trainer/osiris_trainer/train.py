"""One training run: LoRA SFT on the corrections, DPO against the original proposals, the
held-out gate, and the export to `.onnx_adapter`. Runs inside the job process (`job.py`)."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osiris_phi3.prompt import chat_prompt, detect_format

from .config import TrainerConfig
from .dataset import Example
from .evaluate import EvalRow, Scoring, report_table, score

Progress = Callable[[str], None]


@dataclass
class Outcome:
    passed: bool
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)
    adapter_file: str | None = None
    report: dict[str, dict[str, float]] = field(default_factory=dict)
    """Held-out scores per configuration (`evaluate.ROWS`): valid, agreement, loglik, n."""


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("[plugins.trainer] device = 'cuda' but torch sees no CUDA device")
    return device


def load_model(cfg: TrainerConfig, base: Path, device: str) -> tuple[Any, Any]:
    """The base model for training: 4-bit NF4 on CUDA with `qlora` (QLoRA), else full
    precision (fp32 on CPU, bf16 on CUDA)."""
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
        model = AutoModelForCausalLM.from_pretrained(base, **kw).to(device)
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


def sft(cfg: TrainerConfig, model: Any, tok: Any, train: list[Example], s: Scoring, device: str,
        work: str) -> float:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": prompt_text(e, s),
                               "completion": e.chosen + tok.eos_token}
                              for e in train])
    args = SFTConfig(**_common_args(cfg, device, work, cfg.sft_steps),
                     completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    result = trainer.train()
    return float(result.training_loss)


def dpo(cfg: TrainerConfig, model: Any, tok: Any, pairs: list[Example], s: Scoring, device: str,
        work: str) -> float:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list([{"prompt": prompt_text(e, s), "chosen": e.chosen,
                               "rejected": e.rejected} for e in pairs])
    args = DPOConfig(**_common_args(cfg, device, work, cfg.dpo_steps), beta=cfg.dpo_beta)
    # a PEFT model with no ref_model: the reference is the same weights with the adapter
    # switched off, so DPO needs no second copy of the model
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=data,
                         processing_class=tok)
    result = trainer.train()
    return float(result.training_loss)


def gate(cfg: TrainerConfig, before: EvalRow, after: EvalRow) -> tuple[bool, str]:
    """The candidate (after) against what phi3 serves now (before), on the held-out prompts:
    no fewer valid replies, no lower field agreement, no lower preference accuracy, and a
    gain — held-out loss down by `min_improvement`, or agreement up. The reason names every
    number that decided."""
    nll_b, nll_a = -before.loglik, -after.loglik
    want = nll_b * (1.0 - cfg.min_improvement)
    loss_gain = math.isfinite(nll_a) and nll_a <= want
    summary = (f"held-out loss {nll_b:.4f} → {nll_a:.4f}, field agreement "
               f"{before.agreement:.0%} → {after.agreement:.0%}, valid {before.valid:.0%} → "
               f"{after.valid:.0%}")
    bad: list[str] = []
    if after.valid < before.valid:
        bad.append(f"valid replies fell from {before.valid:.0%} to {after.valid:.0%}")
    if after.agreement < before.agreement:
        bad.append(f"field agreement fell from {before.agreement:.0%} to {after.agreement:.0%}")
    if before.pref_acc is not None and (after.pref_acc or 0.0) < before.pref_acc:
        bad.append(f"preference accuracy fell from {before.pref_acc:.2f} "
                   f"to {after.pref_acc or 0.0:.2f}")
    if not loss_gain and after.agreement <= before.agreement:
        bad.append(f"held-out loss {nll_a:.4f} did not beat {want:.4f} ({nll_b:.4f} in "
                   f"service, min_improvement {cfg.min_improvement:g}) and agreement did not rise")
    if bad:
        return False, "; ".join(bad)
    return True, summary


def run(cfg: TrainerConfig, base: Path, train: list[Example], held: list[Example],
        out_dir: Path, version: str, current_peft: Path | None, say: Progress) -> Outcome:
    """Score the base model (and the adapter in service), train, score the candidate, gate,
    and (when it passes) save the PEFT adapter and export `.onnx_adapter`."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model

    phases: dict[str, float] = {}
    t = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        phases[name] = round(now - t, 3)
        t = now

    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    say(f"loading {base} on {device}" + (" (4-bit QLoRA)" if device == "cuda" and cfg.qlora else ""))
    model, tok = load_model(cfg, base, device)
    s = scoring(cfg, base)
    served, shown = cfg.few_shot, report_shots(cfg)
    phase("load")
    rows: dict[str, EvalRow] = {}
    say(f"scoring the models in service on {len(held)} held-out corrections")
    if current_peft is not None:
        serving = PeftModel.from_pretrained(model, str(current_peft), adapter_name="serving")
        rows["in_service"] = score(serving, tok, held, s, shots=served)
        model = serving.unload()  # back to the plain base for the new adapter
    rows["base"] = score(model, tok, held, s, shots=0)
    with_shots = bool(served) or cfg.report_few_shot
    if with_shots:
        rows["few_shot"] = score(model, tok, held, s, shots=shown)
    before = rows.get("in_service") or rows["few_shot" if served else "base"]
    phase("eval_before")
    say(f"in service: held-out loss {-before.loglik:.4f}, field agreement {before.agreement:.0%}, "
        f"valid {before.valid:.0%}")
    peft = get_peft_model(model, LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
    metrics: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="osiris-train-") as work:
        say(f"SFT: {len(train)} corrections, {cfg.sft_steps} steps")
        metrics["sft_loss"] = sft(cfg, peft, tok, train, s, device, work)
        phase("sft")
        pairs = [e for e in train if e.rejected is not None]
        if cfg.dpo_steps > 0 and pairs:
            say(f"DPO: {len(pairs)} pairs (correction vs original), {cfg.dpo_steps} steps")
            metrics["dpo_loss"] = dpo(cfg, peft, tok, pairs, s, device, work)
            phase("dpo")
    say("scoring the new adapter on the held-out corrections")
    rows["adapter"] = score(peft, tok, held, s, shots=0)
    if with_shots:
        rows["adapter_few_shot"] = score(peft, tok, held, s, shots=shown)
    after = rows["adapter_few_shot" if served else "adapter"]
    phase("eval_after")
    metrics.update(nll_before=-before.loglik, nll_after=-after.loglik,
                   agreement_before=before.agreement, agreement_after=after.agreement,
                   valid_before=before.valid, valid_after=after.valid)
    if before.pref_acc is not None:
        metrics["pref_acc_before"] = before.pref_acc
        metrics["pref_acc_after"] = after.pref_acc or 0.0
    report = {k: v.as_dict() for k, v in rows.items()}
    say("held-out report:\n" + report_table(report))
    passed, reason = gate(cfg, before, after)
    say(("passed the gate: " if passed else "held back by the gate: ") + reason)
    if not passed:
        return Outcome(False, reason, metrics, phases, report=report)
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
    return Outcome(True, reason, metrics, phases, str(file), report)

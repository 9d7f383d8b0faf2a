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

from osiris_phi3.prompt import chat_prompt

from .config import TrainerConfig
from .dataset import Example

Progress = Callable[[str], None]


@dataclass
class Outcome:
    passed: bool
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    phases_s: dict[str, float] = field(default_factory=dict)
    adapter_file: str | None = None


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


def prompt_text(e: Example, system: str) -> str:
    return chat_prompt(system, e.prompt)


def _logprob(model: Any, tok: Any, prompt: str, completion: str, max_length: int) -> tuple[float, int]:
    """Sum of log-probabilities of `completion`'s tokens after `prompt`, and their count."""
    import torch

    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tok(completion, add_special_tokens=False)["input_ids"]
    ids = (p_ids + c_ids)[-max_length:]
    n_c = min(len(c_ids), len(ids) - 1)
    x = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=x).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    target = x[0, 1:]
    picked = logp.gather(1, target[:, None])[:, 0][-n_c:]
    return float(picked.sum()), n_c


def evaluate(model: Any, tok: Any, held: list[Example], cfg: TrainerConfig) -> dict[str, float]:
    """Held-out loss of the corrections (mean NLL per token) and, where the original proposal
    is known, how often the model prefers the correction to it."""
    model.eval()
    nll, n_tok, wins, pairs = 0.0, 0, 0, 0
    for e in held:
        p = prompt_text(e, cfg.system_prompt)
        lp, n = _logprob(model, tok, p, e.chosen, cfg.max_length)
        nll -= lp
        n_tok += n
        if e.rejected is not None:
            lr, m = _logprob(model, tok, p, e.rejected, cfg.max_length)
            pairs += 1
            wins += int(lp / max(n, 1) > lr / max(m, 1))
    out = {"nll": nll / max(n_tok, 1)}
    if pairs:
        out["pref_acc"] = wins / pairs
    return out


def _common_args(cfg: TrainerConfig, device: str, out: str, steps: int) -> dict[str, Any]:
    return {"output_dir": out, "max_steps": steps, "per_device_train_batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate, "lr_scheduler_type": "constant",
            "save_strategy": "no", "report_to": "none", "logging_steps": max(1, steps // 5),
            "disable_tqdm": True, "seed": cfg.seed, "use_cpu": device == "cpu",
            "bf16": device == "cuda", "dataloader_num_workers": 0,
            "max_length": cfg.max_length}


def sft(cfg: TrainerConfig, model: Any, tok: Any, train: list[Example], device: str,
        work: str) -> float:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    data = Dataset.from_list([{"prompt": prompt_text(e, cfg.system_prompt),
                               "completion": e.chosen + tok.eos_token}
                              for e in train])
    args = SFTConfig(**_common_args(cfg, device, work, cfg.sft_steps),
                     completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok)
    result = trainer.train()
    return float(result.training_loss)


def dpo(cfg: TrainerConfig, model: Any, tok: Any, pairs: list[Example], device: str,
        work: str) -> float:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    data = Dataset.from_list([{"prompt": prompt_text(e, cfg.system_prompt), "chosen": e.chosen,
                               "rejected": e.rejected} for e in pairs])
    args = DPOConfig(**_common_args(cfg, device, work, cfg.dpo_steps), beta=cfg.dpo_beta)
    # a PEFT model with no ref_model: the reference is the same weights with the adapter
    # switched off, so DPO needs no second copy of the model
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=data,
                         processing_class=tok)
    result = trainer.train()
    return float(result.training_loss)


def gate(cfg: TrainerConfig, before: dict[str, float], after: dict[str, float]) -> tuple[bool, str]:
    """The new adapter must lower held-out loss by `min_improvement` and not lose preference
    accuracy; the reason says which number decided."""
    want = before["nll"] * (1.0 - cfg.min_improvement)
    if not math.isfinite(after["nll"]) or after["nll"] > want:
        return False, (f"held-out loss {after['nll']:.4f} did not beat {want:.4f} "
                       f"({before['nll']:.4f} in service, min_improvement "
                       f"{cfg.min_improvement:g})")
    if "pref_acc" in before and after.get("pref_acc", 0.0) < before["pref_acc"]:
        return False, (f"preference accuracy fell from {before['pref_acc']:.2f} "
                       f"to {after.get('pref_acc', 0.0):.2f}")
    return True, (f"held-out loss {before['nll']:.4f} → {after['nll']:.4f}"
                  + (f", preference accuracy {before['pref_acc']:.2f} → {after['pref_acc']:.2f}"
                     if "pref_acc" in before else ""))


def run(cfg: TrainerConfig, base: Path, train: list[Example], held: list[Example],
        out_dir: Path, version: str, current_peft: Path | None, say: Progress) -> Outcome:
    """Train, gate, and (when it passes) save the PEFT adapter and export `.onnx_adapter`."""
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
    phase("load")
    if current_peft is not None:
        serving = PeftModel.from_pretrained(model, str(current_peft), adapter_name="serving")
        before = evaluate(serving, tok, held, cfg)
        model = serving.unload()  # back to the plain base for the new adapter
    else:
        before = evaluate(model, tok, held, cfg)
    phase("eval_before")
    say(f"in service: held-out loss {before['nll']:.4f}"
        + (f", preference accuracy {before['pref_acc']:.2f}" if "pref_acc" in before else ""))
    peft = get_peft_model(model, LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules), task_type="CAUSAL_LM"))
    metrics: dict[str, float] = {"nll_before": before["nll"]}
    with tempfile.TemporaryDirectory(prefix="osiris-train-") as work:
        say(f"SFT: {len(train)} corrections, {cfg.sft_steps} steps")
        metrics["sft_loss"] = sft(cfg, peft, tok, train, device, work)
        phase("sft")
        pairs = [e for e in train if e.rejected is not None]
        if cfg.dpo_steps > 0 and pairs:
            say(f"DPO: {len(pairs)} pairs (correction vs original), {cfg.dpo_steps} steps")
            metrics["dpo_loss"] = dpo(cfg, peft, tok, pairs, device, work)
            phase("dpo")
    after = evaluate(peft, tok, held, cfg)
    phase("eval_after")
    metrics["nll_after"] = after["nll"]
    if "pref_acc" in before:
        metrics["pref_acc_before"] = before["pref_acc"]
        metrics["pref_acc_after"] = after.get("pref_acc", 0.0)
    passed, reason = gate(cfg, before, after)
    say(("passed the gate: " if passed else "held back by the gate: ") + reason)
    if not passed:
        return Outcome(False, reason, metrics, phases)
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
    return Outcome(True, reason, metrics, phases, str(file))

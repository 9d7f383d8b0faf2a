"""QLoRA on CUDA (run on the device machine): the trainer's loader puts the base in 4-bit
NF4 (bitsandbytes, the `[gpu]` extra) and its SFT then DPO steps train a LoRA on top."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from osiris_models.testing import cuda_test_marks

torch = pytest.importorskip("torch")
pytestmark = cuda_test_marks()
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROPOSAL = ('{{"ticker":"{t}","action":"adjust","side":"LONG","new_stop_pct":{s},'
            '"new_target_pct":{g},"confidence":0.7,"rationale":"trend"}}')


def test_qlora_trains_the_lora_on_a_4bit_base(tiny_models: Path, tmp_path: Path) -> None:
    bnb = pytest.importorskip("bitsandbytes", reason="QLoRA needs the trainer's [gpu] extra")
    from osiris_trainer.config import TrainerConfig
    from osiris_trainer.dataset import Example
    from osiris_trainer.train import dpo, load_model, scoring, sft
    from peft import LoraConfig, get_peft_model

    base = tiny_models / "phi3"
    cfg = TrainerConfig(device="cuda", qlora=True, sft_steps=6, dpo_steps=4, batch_size=2,
                        max_length=256)
    model, tok = load_model(cfg, base, "cuda")
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert four_bit and four_bit[0].weight.quant_type == "nf4"
    assert next(model.parameters()).device.type == "cuda"
    peft = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                            target_modules=list(cfg.target_modules),
                                            task_type="CAUSAL_LM"))
    trained = {n: p.detach().clone() for n, p in peft.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    examples = [Example(id=f"f{i}", prompt=f"Market tick: {t} up {i}%. Propose.",
                        chosen=PROPOSAL.format(t=t, s=2.0 + i / 10, g=6.0),
                        rejected=PROPOSAL.format(t=t, s=9.0, g=1.0))
                for i, t in enumerate(["AAPL", "NVDA", "MSFT", "TSLA"])]
    s = scoring(cfg, base)
    sft_loss = sft(cfg, peft, tok, examples, s, "cuda", str(tmp_path / "sft"))
    dpo_loss = dpo(cfg, peft, tok, examples, s, "cuda", str(tmp_path / "dpo"))
    print(f"\nQLoRA on {torch.cuda.get_device_name(0)}: {len(four_bit)} Linear4bit layers, "
          f"SFT loss {sft_loss:.4f}, DPO loss {dpo_loss:.4f}")
    assert math.isfinite(sft_loss) and math.isfinite(dpo_loss)
    after = dict(peft.named_parameters())
    assert any(not torch.equal(after[n].detach(), v) for n, v in trained.items())

"""SFT of the top layers over cached activations (the CPU recipe), on the tiny Phi-3."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                                        "ignore::UserWarning")

CHOSEN = ('{"ticker":"ZZZ","action":"hold","side":"LONG","new_stop_pct":2.0,'
          '"new_target_pct":6.0,"confidence":0.8,"rationale":"steady"}')


def test_only_the_top_layers_learn_and_the_loss_falls(tiny_models: Path) -> None:
    import torch
    from osiris_trainer.top_sft import supports, train_top_layers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_models / "phi3")
    model = AutoModelForCausalLM.from_pretrained(tiny_models / "phi3", dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8,
                                            target_modules=["qkv_proj", "o_proj"]))
    assert supports(peft)
    data = [(f"Stock {i} moved {i}.5% today.", CHOSEN + tok.eos_token) for i in range(8)]

    def loss() -> float:
        with torch.no_grad():
            total = 0.0
            for p, c in data:
                ids = tok(p + c, add_special_tokens=False, return_tensors="pt")["input_ids"]
                total += float(peft(input_ids=ids, labels=ids).loss)
            return total / len(data)

    before = loss()
    lines: list[str] = []
    train_top_layers(peft, tok, data, layers=1, steps=40, batch_size=4, learning_rate=5e-3,
                     seed=0, max_length=256, say=lines.append, decision_weight=3.0)
    assert loss() < 0.7 * before
    b = {n: p for n, p in peft.named_parameters() if "lora_B" in n}
    assert all(float(p.abs().sum()) == 0 for n, p in b.items() if ".layers.0." in n)
    assert all(float(p.abs().sum()) > 0 for n, p in b.items() if ".layers.1." in n)
    assert lines[-1].startswith("SFT step 40/40 (top 1 layers)")
    assert len(peft.get_base_model().model.layers) == 2  # the full stack is back


def test_decision_tokens_are_the_values_of_the_four_decision_fields(tiny_models: Path) -> None:
    from osiris_trainer.top_sft import decision_spans, token_weights
    from transformers import AutoTokenizer

    spans = decision_spans(CHOSEN)
    assert [CHOSEN[a:b] for a, b in spans] == ['"hold"', '"LONG"', "2.0", "6.0"]
    tok = AutoTokenizer.from_pretrained(tiny_models / "phi3")
    w = token_weights(tok, CHOSEN, 4.0)
    ids = tok(CHOSEN, add_special_tokens=False)["input_ids"]
    heavy = "".join(tok.decode([i]) for i, x in zip(ids, w, strict=True) if x == 4.0)
    assert "hold" in heavy and "LONG" in heavy and "ZZZ" not in heavy and "steady" not in heavy
    assert token_weights(tok, CHOSEN, 1.0) == [1.0] * len(ids)


def test_sft_steps_scale_with_the_corrections_up_to_the_cap() -> None:
    from osiris_trainer.config import TrainerConfig
    from osiris_trainer.train import sft_steps

    cfg = TrainerConfig(sft_epochs=20.0, batch_size=4, sft_max_steps=480)
    assert [sft_steps(cfg, n) for n in (10, 30, 100, 300)] == [50, 150, 480, 480]
    assert sft_steps(TrainerConfig(sft_epochs=20.0, batch_size=4), 300) == 1500  # no cap
    assert sft_steps(TrainerConfig(sft_steps=7), 300) == 7  # epochs off: fixed steps

"""phi3 on the real GenAI loader with the tiny models: parity with transformers, valid
proposals, hot-swapped adapters trained here, few-shot feedback, pause, clear errors."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_phi3 import PHI3_COMPLETE
from osiris_phi3.contracts import Phi3Completion

from osiris_contracts.messages import (
    AdapterPublished,
    StoreQuery,
    StoreRows,
    TradeProposal,
)
from osiris_contracts.subjects import ADAPTERS_PUBLISHED, PHI3_GENERATE, STORE_QUERY
from osiris_core import Actor, PluginConfig, hookimpl, service
from osiris_core.errors import BadRequest, Unavailable
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
RAW = "<|user|>\nPropose a trade for NVDA at 131.5 (-2.25%), stop 4%.<|end|>\n<|assistant|>\n"


def _cfg(osiris_config: Any, model: Path | str, name: str = "osiris.toml", **extra: Any) -> Any:
    return osiris_config(plugins=["phi3"], name=name,
                         tables={"phi3": {"model": str(model), "provider": "cpu", **extra}})


async def _ctl(bus: Any, op: str, **args: Any) -> ControlReply:
    return await bus.request(control("phi3"), {"op": op, "args": args}, reply_type=ControlReply,
                             timeout=60)


async def _complete(bus: Any, prompt: str = RAW, n: int = 32) -> Phi3Completion:
    return await bus.request(PHI3_COMPLETE, {"prompt": prompt, "max_length": n},
                             reply_type=Phi3Completion, timeout=60)


def _hf_greedy(model: Any, tok: Any, prompt: str, n: int) -> list[int]:
    import torch

    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False)
    return [int(t) for t in out[0, len(ids):]]


def _hf(tiny: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny / "phi3").eval(),
            AutoTokenizer.from_pretrained(tiny / "phi3"))


async def test_greedy_onnx_equals_transformers_token_for_token(tiny_models, osiris_config,
                                                                osiris_runtime, bus):
    model, tok = _hf(tiny_models)
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx")):
        for prompt in (RAW, "AAPL closed at 187.25; stop 3% / target 9% [LONG]: rally."):
            got = await _complete(bus, prompt, 32)
            want = _hf_greedy(model, tok, prompt, 32)
            assert len(want) >= 16  # a real comparison, not an early end-of-text
            assert got.token_ids == want
            text = tok.decode(want, skip_special_tokens=True)
            if "\ufffd" not in text:  # a random model can emit bytes that are not UTF-8:
                assert got.generated_text == text  # decoders differ there, ids do not


def _train_lora(tiny: Path, out: Path) -> Any:
    """A few real LoRA steps on the tiny Phi-3 (peft), saved as a PEFT folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny / "phi3")
    base = AutoModelForCausalLM.from_pretrained(tiny / "phi3")
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                           target_modules=["qkv_proj", "o_proj", "gate_up_proj",
                                                           "down_proj"]))
    text = RAW + '{"ticker": "NVDA", "action": "hold", "side": "LONG"}<|end|>'
    batch = tok(text, return_tensors="pt", add_special_tokens=False)
    opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=5e-2)
    peft.train()
    for _ in range(8):
        loss = peft(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    peft.eval()
    peft.save_pretrained(out)
    return peft, tok


async def test_trained_adapter_matches_peft_and_hot_swaps_without_reload(
        tmp_path, tiny_models, osiris_config, osiris_runtime, bus):
    from osiris_models.onnx_lora import export_onnx_adapter

    peft, tok = _train_lora(tiny_models, tmp_path / "lora")
    file = export_onnx_adapter(tiny_models / "phi3", tmp_path / "lora", tmp_path / "v1.onnx_adapter")
    want_adapter = _hf_greedy(peft, tok, RAW, 24)
    with peft.disable_adapter():
        want_base = _hf_greedy(peft, tok, RAW, 24)
    assert want_adapter != want_base  # the training really changed the model

    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx")):
        load_s = (await _ctl(bus, "status")).status.facts["load_s"]
        assert (await _complete(bus, n=24)).token_ids == want_base
        r = await _ctl(bus, "load_adapter", path=str(file), name="v1")
        assert r.result["adapter"] == "v1"
        assert (await _complete(bus, n=24)).token_ids == want_adapter
        r = await _ctl(bus, "rollback")
        assert r.result == {"adapter": None, "previous_adapter": "v1"}
        assert (await _complete(bus, n=24)).token_ids == want_base
        await _ctl(bus, "set_adapter", name="v1")
        assert (await _complete(bus, n=24)).token_ids == want_adapter
        facts = (await _ctl(bus, "status")).status.facts
        assert facts["load_s"] == load_s and facts["adapter_version"] == "v1"  # no reload


async def test_published_adapter_is_hot_loaded_and_rollback_restores(
        tiny_models, osiris_config, osiris_runtime, bus):
    adapters = tiny_models / "phi3-adapters"
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx")):
        base = (await _complete(bus)).token_ids
        for version in ("a", "b"):
            evt = AdapterPublished(version=version, path=str(adapters / f"{version}.onnx_adapter"),
                                   base_model=str(tiny_models / "phi3"),
                                   created=datetime.now(UTC).isoformat())
            await bus.publish(ADAPTERS_PUBLISHED, evt, msg_id=f"adapter-{version}-{os.getpid()}")
            for _ in range(500):  # wait for the event to be applied, bounded
                if (await _ctl(bus, "status")).status.facts["adapter"] == version:
                    break
                await asyncio.sleep(0.01)
            assert (await _ctl(bus, "status")).status.facts["adapter"] == version
        with_b = (await _complete(bus)).token_ids
        r = await _ctl(bus, "rollback")
        assert r.result == {"adapter": "a", "previous_adapter": "b"}
        with_a = (await _complete(bus)).token_ids
        assert len({tuple(base), tuple(with_a), tuple(with_b)}) == 3
        r = await _ctl(bus, "rollback")
        assert r.result["adapter"] == "b"
        assert (await _complete(bus)).token_ids == with_b
        # a proposal still validates with an adapter active
        assert isinstance(await bus.request(PHI3_GENERATE, {"prompt": "TSLA?", "max_length": 200},
                                            reply_type=TradeProposal, timeout=60), TradeProposal)


async def test_fifty_proposals_from_the_random_model_are_fifty_valid(tiny_models, osiris_config,
                                                                     osiris_runtime, bus):
    from osiris_phi3.schema import validate

    tickers = ["AAPL", "MSFT", "NVDA", "TSLA", "XYZ"]
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx", parallel=2)):
        prompts = [f"{tickers[i % 5]} moved {i * 0.37:.2f}% today; volume {1000 + 37 * i}. "
                   f"Adjust the stop? #{i}" for i in range(50)]
        raws = await asyncio.gather(*[
            bus.request(PHI3_GENERATE, {"prompt": p, "max_length": 256}, reply_type=bytes,
                        timeout=120) for p in prompts])
        proposals = [validate(r.decode()) for r in raws]  # schema bounds, not just the types
        assert len(proposals) == 50
        assert all(0 <= p.confidence <= 1 and p.side in ("LONG", "SHORT") for p in proposals)
        assert len({msgspec.json.encode(p) for p in proposals}) > 1  # prompts matter


class _StoreConfig(PluginConfig, frozen=True, kw_only=True):
    pass


class _Store(Actor[_StoreConfig]):
    """Stands in for the feedback plugin's `osiris.store.query` (same contract)."""

    name = "store-standin"
    seen: list[StoreQuery] = []

    @service(STORE_QUERY)
    async def query(self, q: StoreQuery) -> StoreRows:
        _Store.seen.append(q)
        good = {"ticker": "AAPL", "action": "adjust", "side": "LONG", "new_stop_pct": 4.0,
                "new_target_pct": 12.0, "confidence": 0.8, "rationale": "corrected by a human"}
        rows = [{"feedback_type": "correction", "corrected_proposal": good},
                {"feedback_type": "correction", "corrected_proposal": msgspec.json.encode(
                    {**good, "ticker": "MSFT"}).decode()},
                {"feedback_type": "rating", "feedback_content": 5},
                {"feedback_type": "correction", "corrected_proposal": {"ticker": "broken"}}]
        return StoreRows(table=q.table, rows=rows)


class _StorePlugin:
    @staticmethod
    @hookimpl
    def register_actors(register: Any) -> None:
        register(_Store)


async def test_few_shot_examples_come_from_feedback_corrections(tiny_models, osiris_config,
                                                                osiris_runtime, bus):
    cfg = _cfg(osiris_config, tiny_models / "phi3-onnx")
    async with osiris_runtime(cfg):
        await bus.request(PHI3_GENERATE, {"prompt": "AAPL?", "max_length": 200}, timeout=60)
        assert (await _ctl(bus, "status")).status.facts["few_shot_last"] == 0  # no feedback actor
    cfg2 = osiris_config(plugins=["phi3", "store"], name="b.toml",
                         tables={"phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu"}})
    async with osiris_runtime(cfg2, extra_plugins={"store": _StorePlugin()}):
        p = await bus.request(PHI3_GENERATE, {"prompt": "AAPL?", "max_length": 200},
                              reply_type=TradeProposal, timeout=60)
        assert isinstance(p, TradeProposal)
        assert (await _ctl(bus, "status")).status.facts["few_shot_last"] == 2
        assert _Store.seen and _Store.seen[-1].table == "feedback"


async def test_request_during_pause_is_answered_after_resume(tiny_models, osiris_config,
                                                             osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx")):
        before = (await _complete(bus)).token_ids
        weights = (await _ctl(bus, "status")).status.facts["bytes_resident"]
        assert weights > 10_000  # the gpu supervisor budgets with it
        r = await _ctl(bus, "pause")
        assert r.status.state == "paused" and r.status.facts["loaded"] is False
        assert r.status.facts["bytes_resident"] == 0
        pending = [asyncio.create_task(_complete(bus)) for _ in range(3)]
        done, _ = await asyncio.wait(pending, timeout=0.3)
        assert not done
        r = await _ctl(bus, "resume")
        assert r.status.facts["loaded"] is True and "resume_s" in r.result
        got = await asyncio.wait_for(asyncio.gather(*pending), 60)
        assert [g.token_ids for g in got] == [before] * 3


async def test_clear_errors_and_the_actor_keeps_serving(tmp_path, tiny_models, osiris_config,
                                                        osiris_runtime, bus):
    missing = tmp_path / "nope"
    async with osiris_runtime(_cfg(osiris_config, missing)):
        with pytest.raises(Unavailable) as e:
            await bus.request(PHI3_GENERATE, {"prompt": "x"}, timeout=10)
        assert str(missing) in str(e.value) and "osiris models tiny" in str(e.value)
        facts = (await _ctl(bus, "status")).status.facts
        assert facts["loaded"] is False and facts["model_file_exists"] is False
        with pytest.raises(Unavailable):  # still answering
            await bus.request(PHI3_GENERATE, {"prompt": "x"}, timeout=10)
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3", name="b.toml")):
        with pytest.raises(Unavailable) as e:
            await bus.request(PHI3_GENERATE, {"prompt": "x"}, timeout=10)
        assert "wrong model format" in str(e.value) and "Hugging Face" in str(e.value)
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx", name="c.toml")):
        with pytest.raises(BadRequest) as e:
            await bus.request(PHI3_GENERATE, {"prompt": "word " * 5000}, timeout=30)
        assert e.value.field == "prompt" and "too long" in str(e.value)
        with pytest.raises(BadRequest) as e:
            await _ctl(bus, "load_adapter", path=str(tmp_path / "none.onnx_adapter"))
        assert "not found" in str(e.value)
        with pytest.raises(BadRequest) as e:
            await _ctl(bus, "rollback")
        assert "no adapter" in str(e.value)
        assert isinstance(await bus.request(PHI3_GENERATE, {"prompt": "ok?", "max_length": 200},
                                            reply_type=TradeProposal, timeout=60), TradeProposal)


async def test_a_max_length_too_small_for_a_proposal_is_a_400_naming_it(
        tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx")):
        with pytest.raises(BadRequest) as e:
            await bus.request(PHI3_GENERATE, {"prompt": "XYZ", "max_length": 8}, timeout=60)
        assert e.value.field == "max_length" and "too small" in e.value.message
        assert (await bus.request(PHI3_GENERATE, {"prompt": "XYZ"}, timeout=60))["ticker"]


async def test_score_reads_what_generate_serves_with_live_base_or_a_shadow_adapter(
        tiny_models, osiris_config, osiris_runtime, bus):
    from osiris_phi3.contracts import PHI3_SCORE, ScoreReply

    adapters = tiny_models / "phi3-adapters"
    prompts = [f"{t} moved {i - 2}.5% today." for i, t in enumerate(["NVDA", "TSLA", "AMD"])]

    async def served() -> list[tuple[Any, ...]]:
        got = [await bus.request(PHI3_GENERATE, {"prompt": p, "max_length": 256},
                                 reply_type=TradeProposal, timeout=60) for p in prompts]
        return [(g.ticker, g.action, g.side, g.new_stop_pct, g.new_target_pct) for g in got]

    async def score(**kw: Any) -> ScoreReply:
        return await bus.request(PHI3_SCORE, {"rows": [{"prompt": p} for p in prompts], **kw},
                                 reply_type=ScoreReply, timeout=120)

    def fields(r: ScoreReply) -> list[tuple[Any, ...]]:
        return [(d.ticker, d.action, d.side, d.new_stop_pct, d.new_target_pct) if d else None
                for d in r.decisions]

    async with osiris_runtime(_cfg(osiris_config, tiny_models / "phi3-onnx", few_shot=0)):
        base = await served()
        assert fields(await score()) == base  # live = no adapter yet
        shadow = await score(adapter_file=str(adapters / "a.onnx_adapter"))
        assert shadow.adapter is None and fields(shadow) != base
        facts = (await _ctl(bus, "status")).status.facts
        assert facts["adapter"] is None and facts["adapters"] == []  # nothing left loaded
        await _ctl(bus, "load_adapter", path=str(adapters / "a.onnx_adapter"), name="a")
        with_a = await served()
        assert fields(shadow) == with_a  # the shadow slot scored what "a" now serves
        live = await score()
        assert live.adapter == "a" and fields(live) == with_a
        assert fields(await score(adapter="base")) == base
        with pytest.raises(BadRequest, match="unknown adapter 'nope'"):
            await score(adapter="nope")
        with pytest.raises(BadRequest, match="adapter file not found"):
            await score(adapter_file=str(adapters / "missing.onnx_adapter"))
        with pytest.raises(BadRequest, match="rows"):
            await bus.request(PHI3_SCORE, {"rows": []}, reply_type=ScoreReply, timeout=30)
        assert (await _ctl(bus, "status")).status.state == "running"

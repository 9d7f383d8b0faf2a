"""On a CUDA machine (device machine): the supervisor with the NVML probe pauses hermes and the
driver's numbers drop by about its weights; a request during the pause brings it back."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_models.testing import cuda_test_marks

from osiris_contracts.messages import GenerateReply, GpuEvent, GpuStatus
from osiris_contracts.subjects import GPU_EVENTS, GPU_STATUS, HERMES_GENERATE
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

torch = pytest.importorskip("torch")
pytestmark = cuda_test_marks()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
GiB = 1024**3


@pytest.fixture(scope="module")
def big_llama(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    """A ~0.4B-parameter random Llama (0.8 GB fp16) with the tiny tokenizer, built locally."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("big-llama")
    tok = AutoTokenizer.from_pretrained(tiny_models / "hermes")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=2048, intermediate_size=5632,
                      num_hidden_layers=8, num_attention_heads=16, num_key_value_heads=16,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).half()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return out


async def _ctl(bus: Any, target: str, op: str, **args: Any) -> ControlReply:
    return await bus.request(control(target), {"op": op, "args": args}, reply_type=ControlReply,
                             timeout=120)


async def test_nvml_pause_frees_the_weights_and_a_request_brings_hermes_back(
        big_llama, osiris_config, osiris_runtime, bus):
    events: list[GpuEvent] = []

    async def cb(msg: Any) -> None:
        events.append(msgspec.json.decode(msg.data, type=GpuEvent))

    sub = await bus.nc.subscribe(GPU_EVENTS.name, cb=cb)
    cfg = osiris_config(plugins=["hermes", "gpu"], tables={
        "hermes": {"model": str(big_llama), "device": "auto"},
        "gpu": {"probe": "nvml", "poll_s": 0, "budget_gb": 60}})
    async with osiris_runtime(cfg):
        st = await bus.request(GPU_STATUS, None, reply_type=GpuStatus, timeout=30)
        assert st.probe == "nvml" and st.devices[0].total_bytes, st
        weights = next(a for a in st.actors if a.name == "hermes").resident_bytes or 0
        assert weights > 700e6
        prompt = {"prompt": "AAPL?", "max_length": 16}
        before = await bus.request(HERMES_GENERATE, prompt, reply_type=GenerateReply, timeout=120)
        used_running = (await _ctl(bus, "gpu", "poll")).result["used_bytes"]

        r = await _ctl(bus, "gpu", "evict", actor="hermes")
        assert r.result == {"paused": True}
        paused = next(e for e in events if e.kind == "paused")
        used_paused = paused.used_bytes or 0
        print(f"\nNVML used {used_running / GiB:.3f} → {used_paused / GiB:.3f} GiB: freed "
              f"{(paused.freed_bytes or 0) / GiB:.3f} GiB, weights {weights / GiB:.3f} GiB, "
              f"pause {paused.duration_s:.3f}s")
        assert paused.freed_bytes is not None and paused.detail is None  # confirmed
        assert 0.8 * weights <= paused.freed_bytes <= 1.5 * weights

        # a request during the pause: announced, resumed by the supervisor, then served
        after = await asyncio.wait_for(bus.request(HERMES_GENERATE, prompt,
                                                   reply_type=GenerateReply, timeout=120), 120)
        assert after.generated_text == before.generated_text
        resumed = next(e for e in events if e.kind == "resumed")
        assert resumed.actor == "hermes" and resumed.reason == "wanted"
        used_back = (await _ctl(bus, "gpu", "poll")).result["used_bytes"]
        print(f"resume {resumed.duration_s:.3f}s; NVML used back to {used_back / GiB:.3f} GiB")
        assert used_back - used_paused >= 0.8 * weights
        assert (await _ctl(bus, "hermes", "status")).status.facts["device"] == "cuda"
    await sub.unsubscribe()


async def test_nvml_over_budget_pauses_after_n_reads_then_cannot_fit(
        big_llama, osiris_config, osiris_runtime, bus):
    import pynvml

    pynvml.nvmlInit()
    baseline = int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)
    pynvml.nvmlShutdown()
    budget = baseline + 0.4e9  # room for a CUDA context, not for the 0.8 GB of weights
    cfg = osiris_config(plugins=["hermes", "gpu"], tables={
        "hermes": {"model": str(big_llama), "device": "auto", "request_wait_s": 3},
        "gpu": {"probe": "nvml", "poll_s": 0, "budget_gb": budget / GiB,
                "over_budget_reads": 3}})
    async with osiris_runtime(cfg):
        reads = [(await _ctl(bus, "gpu", "poll")).result for _ in range(3)]
        assert [r["over_reads"] for r in reads[:2]] == [1, 2] and reads[1]["paused"] == []
        assert reads[2]["paused"] == ["hermes"] and reads[2]["used_bytes"] <= budget
        from osiris_core import Unavailable

        with pytest.raises(Unavailable):
            await bus.request(HERMES_GENERATE, {"prompt": "x", "max_length": 4}, timeout=60)
        st = await bus.request(GPU_STATUS, None, reply_type=GpuStatus, timeout=30)
        hermes = next(a for a in st.actors if a.name == "hermes")
        assert hermes.state == "paused" and hermes.cannot_fit and st.events["cannot_fit"] == 1

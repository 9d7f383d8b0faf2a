"""hermes on CUDA (run on the device machine): placement, and pause really frees VRAM (NVML)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from osiris_models.testing import cuda_test_marks

from osiris_contracts.messages import GenerateReply
from osiris_contracts.subjects import HERMES_GENERATE
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

torch = pytest.importorskip("torch")
pytestmark = cuda_test_marks()
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _vram_used() -> int:
    """Bytes in use on GPU 0 according to the driver (NVML), not torch's allocator."""
    import pynvml

    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        return int(pynvml.nvmlDeviceGetMemoryInfo(h).used)
    finally:
        pynvml.nvmlShutdown()


@pytest.fixture(scope="module")
def big_random_llama(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path) -> Path:
    """A ~0.4B-parameter random Llama (0.8 GB in fp16) with the tiny tokenizer: big enough to
    see in NVML, built locally (no download)."""
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


async def _ctl(bus: Any, op: str) -> ControlReply:
    return await bus.request(control("hermes"), {"op": op}, reply_type=ControlReply, timeout=120)


@pytest.mark.parametrize("mode", ["offload", "drop"])
async def test_cuda_placement_and_pause_frees_vram(mode, big_random_llama, osiris_config,
                                                   osiris_runtime, bus):
    cfg = osiris_config(plugins=["hermes"], tables={"hermes": {
        "model": str(big_random_llama), "device": "auto", "pause_mode": mode}})
    async with osiris_runtime(cfg):
        facts = (await _ctl(bus, "status")).status.facts
        assert facts["device"] == "cuda" and facts["loaded"] is True
        assert facts["bytes_resident"] > 700e6
        before = await bus.request(HERMES_GENERATE, {"prompt": "AAPL?", "max_length": 16},
                                   reply_type=GenerateReply, timeout=120)
        used_running = _vram_used()
        paused = await _ctl(bus, "pause")
        used_paused = _vram_used()
        assert paused.status.facts["bytes_resident"] == 0
        freed = used_running - used_paused
        print(f"\n{mode}: NVML used {used_running / 1e9:.2f} GB → {used_paused / 1e9:.2f} GB "
              f"(freed {freed / 1e9:.2f} GB) in {paused.result['pause_s']:.3f}s")
        assert freed > 0.6e9  # the weights (0.8 GB) really left the GPU
        resumed = await _ctl(bus, "resume")
        print(f"{mode}: resume {resumed.result['resume_s']:.3f}s")
        assert resumed.status.facts["device"] == "cuda"
        after = await bus.request(HERMES_GENERATE, {"prompt": "AAPL?", "max_length": 16},
                                  reply_type=GenerateReply, timeout=120)
        assert after.generated_text == before.generated_text


async def test_tiny_hermes_generates_on_cuda(tiny_models, osiris_config, osiris_runtime, bus):
    cfg = osiris_config(plugins=["hermes"], tables={"hermes": {
        "model": str(tiny_models / "hermes"), "device": "cuda"}})
    async with osiris_runtime(cfg):
        r = await bus.request(HERMES_GENERATE, {"prompt": "hello", "max_length": 12},
                              reply_type=GenerateReply, timeout=120)
        assert r.usage and r.usage["completion_tokens"] == 12
        assert (await _ctl(bus, "status")).status.facts["device"] == "cuda"

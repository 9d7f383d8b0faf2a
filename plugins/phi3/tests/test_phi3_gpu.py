"""phi3 with the GenAI CUDA provider (run on the device machine with onnxruntime-genai-cuda)."""

from __future__ import annotations

from typing import Any

import pytest

from osiris_contracts.messages import TradeProposal
from osiris_contracts.subjects import PHI3_GENERATE
from osiris_core.protocol import ControlReply
from osiris_core.subjects import control

og = pytest.importorskip("onnxruntime_genai")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not og.is_cuda_available(),
                       reason="needs onnxruntime-genai-cuda and a CUDA device (GPU test)"),
]


async def _ctl(bus: Any, op: str) -> ControlReply:
    return await bus.request(control("phi3"), {"op": op}, reply_type=ControlReply, timeout=120)


async def test_cuda_provider_serves_valid_proposals_and_pauses(tiny_models, osiris_config,
                                                               osiris_runtime, bus):
    cfg = osiris_config(plugins=["phi3"], tables={"phi3": {
        "model": str(tiny_models / "phi3-onnx"), "provider": "auto"}})
    async with osiris_runtime(cfg):
        assert (await _ctl(bus, "status")).status.facts["device"] == "cuda"
        for i in range(5):
            p = await bus.request(PHI3_GENERATE, {"prompt": f"AAPL #{i}", "max_length": 200},
                                  reply_type=TradeProposal, timeout=120)
            assert 0 <= p.confidence <= 1
        assert (await _ctl(bus, "pause")).status.facts["loaded"] is False
        assert (await _ctl(bus, "resume")).status.facts["loaded"] is True

"""A profile of a busy hermes shows the generation frames (they run in an executor thread,
which pyinstrument alone would not see)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

from osiris_contracts.messages import GenerateReply
from osiris_contracts.subjects import HERMES_GENERATE
from osiris_core.observability.profiling import decode_data
from osiris_core.protocol import ControlReply, ProfileResult
from osiris_core.subjects import control

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def test_a_profile_of_a_busy_hermes_shows_the_generation_frames(
        tiny_models: Any, osiris_config: Any, osiris_runtime: Any, bus: Any) -> None:
    cfg = osiris_config(plugins=["hermes"], tables={"hermes": {
        "model": str(tiny_models / "hermes"), "device": "cpu"}})
    async with osiris_runtime(cfg):
        busy = True

        async def keep_generating() -> int:
            n = 0
            while busy:
                await bus.request(HERMES_GENERATE, {"prompt": "Assess AAPL LONG",
                                                    "max_length": 64},
                                  reply_type=GenerateReply, timeout=60)
                n += 1
            return n

        load = asyncio.ensure_future(keep_generating())
        try:
            reply = await bus.request(control("hermes"),
                                      {"op": "profile", "args": {"seconds": 5}},
                                      reply_type=ControlReply, timeout=60)
        finally:
            busy = False
        assert await load >= 1
    result = ProfileResult(**reply.result)
    doc = json.loads(decode_data(result))
    frames = doc["shared"]["frames"]
    used = {i for p in doc["profiles"] for s in p["samples"] for i in s}
    files = {frames[i].get("file", "") for i in used}
    names = {frames[i]["name"] for i in used}
    assert any(f.endswith("osiris_hermes/engine.py") for f in files), sorted(names)[:50]
    assert any("generate" in n for n in names)
    assert any("forward" in n for n in names)  # the model's own frames, from torch

"""A request can fail, an actor cannot: out-of-range values sent over a real NATS to the
model actors (tiny models through the production loaders), the tts actor (espeak) and the
store get an error naming the field, and no actor restarts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from osiris_contracts.messages import MAX_NEW_TOKENS, TradeProposal
from osiris_contracts.subjects import HERMES_GENERATE, PHI3_GENERATE, STORE_QUERY, TTS_SPEAK
from osiris_core import Config, ServiceError
from osiris_core.nats.bus import Bus
from osiris_core.subjects import Subject, control

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CAP = 8192
"""Both model actors get a cap above the tiny models' 4096-token context, so a max_length
within the cap but past the context reaches the actor's own check."""

GEN = {"prompt": "Propose a trade for NVDA at 131.5, stop 4%."}
GENERATE_CASES: list[tuple[dict[str, Any], str]] = [
    ({**GEN, "temperature": -5, "top_p": 7}, "temperature"),  # the issue's own example
    ({**GEN, "temperature": 50}, "temperature"),
    ({**GEN, "top_p": 7}, "top_p"),
    ({**GEN, "top_p": 0}, "top_p"),
    ({**GEN, "top_p": -1}, "top_p"),
    ({**GEN, "max_length": 0}, "max_length"),
    ({**GEN, "max_length": -1}, "max_length"),
    ({**GEN, "max_length": MAX_NEW_TOKENS + 1}, "max_length"),
    ({**GEN, "max_length": CAP + 1}, "max_length"),  # the actor's configured cap
    ({**GEN, "max_length": 5000}, "max_length"),  # within the cap, past the model's context
    ({"prompt": ""}, "prompt"),
    ({**GEN, "stop": ["x"] * 17}, "stop"),
]
SPEAK_CASES: list[tuple[dict[str, Any], str]] = [
    ({"text": "hi", "exaggeration": -1}, "exaggeration"),
    ({"text": "hi", "exaggeration": 7}, "exaggeration"),
    ({"text": "hi", "utterance_id": "a b/c"}, "utterance_id"),
    ({"text": "x" * 100_001}, "text"),
]
QUERY_CASES: list[tuple[dict[str, Any], str]] = [
    ({"table": "feedback", "limit": 0}, "limit"),
    ({"table": "feedback", "limit": -5}, "limit"),
]


async def _refused(bus: Bus, subject: Subject, payload: dict[str, Any], field: str) -> None:
    with pytest.raises(ServiceError) as e:
        await bus.request(subject, payload, timeout=60)
    assert 400 <= e.value.code < 500, (payload, e.value)
    assert e.value.field == field, (payload, e.value)
    assert field in e.value.message, (payload, e.value.message)


async def _status(bus: Bus, actor: str) -> dict[str, Any]:
    reply = await bus.request(control(actor), {"op": "status"}, timeout=30)
    status: dict[str, Any] = reply["status"]
    return status


async def test_out_of_range_fields_are_refused_naming_them_and_no_actor_restarts(
    tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(
        plugins=["phi3", "hermes", "tts", "feedback"],
        tables={"phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu",
                         "max_new_tokens_cap": CAP, "few_shot": 0},
                "hermes": {"model": str(tiny_models / "hermes"), "device": "cpu",
                           "max_new_tokens_cap": CAP},
                "tts": {"engine": "espeak", "rate_limit_per_s": 0}})
    async with osiris_runtime(cfg):
        for subject in (PHI3_GENERATE, HERMES_GENERATE):
            for payload, field in GENERATE_CASES:
                await _refused(bus, subject, payload, field)
        for payload, field in SPEAK_CASES:
            await _refused(bus, TTS_SPEAK, payload, field)
        for payload, field in QUERY_CASES:
            await _refused(bus, STORE_QUERY, payload, field)

        # every actor still serves, and none was restarted to get there
        proposal = await bus.request(PHI3_GENERATE, {**GEN, "temperature": 0.0, "top_p": 1.0},
                                     reply_type=TradeProposal, timeout=120)
        assert proposal.ticker
        reply = await bus.request(HERMES_GENERATE, {**GEN, "max_length": 8, "temperature": 0.7,
                                                    "top_p": 0.9}, timeout=60)
        assert "generated_text" in reply
        wav = await bus.request(TTS_SPEAK, {"text": "still here", "exaggeration": 2.0},
                                reply_type=bytes, timeout=60)
        assert wav[:4] == b"RIFF"
        rows = await bus.request(STORE_QUERY, {"table": "feedback", "limit": 1}, timeout=30)
        assert rows["rows"] == []
        for actor in ("phi3", "hermes", "tts", "feedback"):
            status = await _status(bus, actor)
            assert status["restarts"] == 0, (actor, status)
            assert status["state"] == "running", (actor, status)

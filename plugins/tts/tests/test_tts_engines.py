"""Engine choice per config: chatterbox is absent in this environment (it pins torch 2.6), so
its absence must be reported clearly, and espeak may stand in only when `fallback = true`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from osiris_tts.audio import read_wav, rms, split_sentences
from osiris_tts.chatterbox import ChatterboxEngine
from osiris_tts.config import TtsConfig
from osiris_tts.engine import EngineUnavailable, choose_engine
from osiris_tts.espeak import EspeakEngine

from osiris_contracts.subjects import TTS_SPEAK
from osiris_core import Config, Unavailable
from osiris_core.nats.bus import Bus
from osiris_core.protocol import StatusOp

pytestmark = pytest.mark.skipif(importlib.util.find_spec("chatterbox") is not None,
                                reason="chatterbox-tts is installed here: absence not testable")


async def status(bus: Bus) -> dict[str, Any]:
    reply = await bus.control("tts", StatusOp())
    return reply.status.facts


@pytest.mark.parametrize("engine", ["chatterbox", "auto"])
async def test_without_fallback_the_absence_is_a_clear_503_and_in_health(
    engine: str, osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": engine, "fallback": False}})
    async with osiris_runtime(config):
        with pytest.raises(Unavailable) as err:
            await bus.request(TTS_SPEAK, {"text": "hello"})
        facts = await status(bus)
    message = err.value.message
    assert "'chatterbox-tts' package is not installed" in message
    assert "fallback = false" in message and "README" in message
    assert facts["engine"] is None and facts["loaded"] is False
    assert facts["engine_error"] == message and facts["requested_engine"] == engine


@pytest.mark.parametrize("engine", ["chatterbox", "auto"])
async def test_with_fallback_espeak_speaks_and_the_reason_is_reported(
    engine: str, osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": engine, "fallback": True}})
    async with osiris_runtime(config):
        wav = await bus.request(TTS_SPEAK, {"text": "falling back"}, reply_type=bytes)
        facts = await status(bus)
    assert rms(read_wav(wav).frames) > 500
    assert facts["engine"] == "espeak" and facts["requested_engine"] == engine
    assert "'chatterbox-tts' package is not installed" in facts["fallback_reason"]
    assert facts["engine_error"] is None


def test_a_missing_checkpoint_is_named_along_with_the_missing_package(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as err:
        ChatterboxEngine.load(str(tmp_path / "nowhere"))
    assert "package is not installed" in str(err.value)
    assert f"checkpoint folder not found: {tmp_path / 'nowhere'}" in str(err.value)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "ve.safetensors").write_bytes(b"")
    with pytest.raises(EngineUnavailable, match="lacks t3_cfg.safetensors, s3gen.safetensors"):
        ChatterboxEngine.load(str(tmp_path / "ckpt"))


def test_espeak_engine_is_chosen_without_probing_chatterbox() -> None:
    choice = choose_engine(TtsConfig(engine="espeak", fallback=False))
    assert isinstance(choice.engine, EspeakEngine)
    assert choice.fallback_reason is None and choice.error is None


def test_espeak_engine_speaks_at_22050_hz_and_rejects_unknown_voices() -> None:
    engine = EspeakEngine()
    assert engine.sample_rate == 22050
    quiet = engine.synthesize("Steady as she goes.", exaggeration=0.0)
    lively = engine.synthesize("Steady as she goes.", exaggeration=1.0)
    assert rms(quiet) > 500 and rms(lively) > 500 and quiet != lively
    with pytest.raises(EngineUnavailable, match="no voice 'klingon-xx'"):
        EspeakEngine(voice="klingon-xx")
    assert rms(engine.synthesize("Still English.", exaggeration=0.5)) > 500


def test_sentences_split_in_order_and_long_ones_are_cut_at_commas_then_spaces() -> None:
    assert split_sentences("One. Two!  Three?\nFour") == ["One.", "Two!", "Three?", "Four"]
    long = "alpha beta, " * 30
    pieces = split_sentences(long, max_chars=50)
    assert all(len(p) <= 50 for p in pieces) and len(pieces) > 5
    assert " ".join(pieces).split() == long.split()
    assert split_sentences("x" * 120, max_chars=50) == ["x" * 50, "x" * 50, "x" * 20]

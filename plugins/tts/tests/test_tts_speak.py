"""`osiris.tts.speak` over a real NATS with the real espeak-ng engine: WAVs, limits, errors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from osiris_tts.audio import read_wav, rms, wav_bytes

from osiris_contracts.messages import TtsResult
from osiris_contracts.subjects import TTS_SPEAK
from osiris_core import BadRequest, Config, ServiceError
from osiris_core.nats.bus import Bus

SHORT = "Buy the dip."
MEDIUM = "The market opened higher this morning, and technology shares led the advance."
LONG = (MEDIUM + " Energy stocks lagged as crude oil slipped for a third session. "
        "Bond yields were steady ahead of the inflation report due on Thursday.")
RMS_FLOOR = 500.0  # espeak speech sits around 3,000; digital silence is 0


def espeak(osiris_config: Callable[..., Config], **table: Any) -> Config:
    return osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak", **table}})


async def test_speak_returns_a_valid_wav_that_grows_with_the_text_and_is_not_silent(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    async with osiris_runtime(espeak(osiris_config)):
        durations = []
        for text in (SHORT, MEDIUM, LONG):
            wav = await bus.request(TTS_SPEAK, {"text": text}, reply_type=bytes)
            assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
            info = read_wav(wav)
            assert (info.channels, info.sample_width, info.sample_rate) == (1, 2, 22050)
            assert rms(info.frames) > RMS_FLOOR, f"silent WAV for {text!r}"
            durations.append(info.duration_s)
    assert 0.3 < durations[0] < durations[1] < durations[2]


async def test_bad_input_is_a_400_naming_the_field_and_the_actor_keeps_serving(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    not_a_wav = base64.b64encode(b"hello, I am not a wav file at all").decode()
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"text": ""}, "text", "empty"),
        ({"text": "   \n "}, "text", "empty"),
        ({"text": "x" * 201}, "text", "limit is 200"),
        ({"text": "?!"}, "text", "nothing speakable"),
        ({"text": "hi", "ref_wav_b64": "not base64!!"}, "ref_wav_b64", "not valid base64"),
        ({"text": "hi", "ref_wav_b64": not_a_wav}, "ref_wav_b64", "not a PCM WAV"),
        ({"text": "hi", "exaggeration": 7}, "exaggeration", "<= 2.0"),
        ({"text": "hi", "exaggeration": -1}, "exaggeration", ">= 0.0"),
        ({"text": "hi", "utterance_id": "a b/c"}, "utterance_id", "utterance_id"),
        ({"text": 3}, "text", "expected `str`"),
        ({"text": "hi", "voice": "x"}, "voice", "unknown"),
    ]
    async with osiris_runtime(espeak(osiris_config, max_text_chars=200)):
        for payload, field, words in cases:
            with pytest.raises(ServiceError) as err:
                await bus.request(TTS_SPEAK, payload)
            # 400 from the actor's own checks; a decode error naming a field may be a 422
            assert err.value.code in (400, 422), payload
            assert err.value.field == field, payload
            assert words in err.value.message, (payload, err.value.message)
        wav = await bus.request(TTS_SPEAK, {"text": "still here"}, reply_type=bytes)
        assert rms(read_wav(wav).frames) > RMS_FLOOR


async def test_a_reference_wav_is_accepted_as_base64_and_as_a_data_url(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    ref = base64.b64encode(wav_bytes(b"\x10\x00" * 2205, 22050)).decode()
    async with osiris_runtime(espeak(osiris_config)):
        for value in (ref, "data:audio/wav;base64," + ref):
            wav = await bus.request(TTS_SPEAK, {"text": "cloned", "ref_wav_b64": value},
                                    reply_type=bytes)
            assert read_wav(wav).duration_s > 0.2


async def test_requests_beyond_the_rate_limit_get_a_429(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = espeak(osiris_config, rate_limit_per_s=0.001, rate_limit_burst=2)
    async with osiris_runtime(config):
        for _ in range(2):
            await bus.request(TTS_SPEAK, {"text": "ok"}, reply_type=bytes)
        with pytest.raises(ServiceError) as err:
            await bus.request(TTS_SPEAK, {"text": "one too many"})
        assert err.value.code == 429 and "rate limit" in err.value.message
        # bad input is refused before it spends a token
        with pytest.raises(BadRequest):
            await bus.request(TTS_SPEAK, {"text": ""})


async def test_reply_wav_false_answers_with_a_summary(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    async with osiris_runtime(espeak(osiris_config)):
        result = await bus.request(
            TTS_SPEAK, {"text": LONG, "reply_wav": False, "utterance_id": "u-1"},
            reply_type=TtsResult)
    assert result.utterance_id == "u-1" and result.engine == "espeak"
    assert result.chunks == 3 and result.sample_rate == 22050 and result.duration_s > 3

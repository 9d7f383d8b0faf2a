"""Streaming synthesis: a long text arrives on `audio.bytes` as ordered sentence chunks, the
first published while the rest is still being synthesised (real NATS, real espeak-ng)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from osiris_tts.audio import read_wav, rms

from osiris_contracts.messages import AudioChunk, TtsResult
from osiris_contracts.subjects import AUDIO_BYTES, TTS_SPEAK
from osiris_core import Config, ServiceError
from osiris_core.nats.bus import Bus

SENTENCES = [
    f"Sentence number {i} says that the index closed {i} points higher on heavy volume, "
    "while traders waited for the central bank."
    for i in range(1, 21)
]
LONG_TEXT = " ".join(SENTENCES)  # about 150 s of speech: far beyond one NATS message
SHORT_SENTENCES = [f"Point {i} is up." for i in range(1, 7)]


async def test_long_text_streams_ordered_chunks_the_first_before_synthesis_ends(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak"}})
    timeline: list[tuple[str, int, int]] = []  # (event, seq, sentences synthesised by then)
    chunks: list[AudioChunk] = []
    last = asyncio.Event()
    async with osiris_runtime(config) as rt:
        actor = rt.cell("tts").actor

        async def on_chunk(msg: Any) -> None:
            chunk = msgspec.json.decode(msg.data, type=AudioChunk)
            if chunk.utterance_id != "long-1":
                return
            timeline.append(("chunk", chunk.seq, actor.sentences_synthesised - before))
            chunks.append(chunk)
            if chunk.final:
                last.set()

        sub = await bus.nc.subscribe(str(AUDIO_BYTES), cb=on_chunk)
        await bus.nc.flush()
        before = actor.sentences_synthesised
        result = await bus.request(
            TTS_SPEAK, {"text": LONG_TEXT, "stream": True, "utterance_id": "long-1",
                        "reply_wav": False}, reply_type=TtsResult)
        timeline.append(("reply", -1, actor.sentences_synthesised - before))
        await asyncio.wait_for(last.wait(), 10)
        await sub.unsubscribe()

    n = len(SENTENCES)
    assert [c.seq for c in chunks] == list(range(n))
    assert [c.final for c in chunks] == [False] * (n - 1) + [True]
    assert [c.text for c in chunks] == SENTENCES
    # The first chunk reached a subscriber while later sentences were still unsynthesised.
    first = timeline[0]
    assert first[:2] == ("chunk", 0)
    assert first[2] < n, f"chunk 0 arrived only after all {n} sentences were synthesised"
    assert timeline.index(first) < [e[0] for e in timeline].index("reply")
    assert result.chunks == n and result.utterance_id == "long-1"
    total = 0.0
    for c in chunks:
        info = read_wav(base64.b64decode(c.wav_b64))
        assert info.sample_rate == c.sample_rate == 22050 and rms(info.frames) > 500
        total += info.duration_s
    assert abs(total - result.duration_s) < 0.01


async def test_streamed_chunks_join_into_exactly_the_replied_wav(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak"}})
    chunks: list[AudioChunk] = []
    last = asyncio.Event()

    async def on_chunk(msg: Any) -> None:
        chunks.append(msgspec.json.decode(msg.data, type=AudioChunk))
        if chunks[-1].final:
            last.set()

    async with osiris_runtime(config):
        sub = await bus.nc.subscribe(str(AUDIO_BYTES), cb=on_chunk)
        await bus.nc.flush()
        wav = await bus.request(TTS_SPEAK, {"text": " ".join(SHORT_SENTENCES), "stream": True},
                                reply_type=bytes)
        await asyncio.wait_for(last.wait(), 10)
        await sub.unsubscribe()
    assert [c.text for c in chunks] == SHORT_SENTENCES
    assert len({c.utterance_id for c in chunks}) == 1
    joined = b"".join(read_wav(base64.b64decode(c.wav_b64)).frames for c in chunks)
    assert joined == read_wav(wav).frames


async def test_a_wav_beyond_max_payload_is_a_413_naming_text_after_streaming_it(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    # three times the long text: ~450 s of speech, ~20 MB of WAV, beyond even the embedded
    # server's 8 MiB max_payload
    text = " ".join([LONG_TEXT] * 3)
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak",
                                                            "max_text_chars": len(text)}})
    finals = asyncio.Event()

    async def on_chunk(msg: Any) -> None:
        if msgspec.json.decode(msg.data, type=AudioChunk).final:
            finals.set()

    async with osiris_runtime(config):
        sub = await bus.nc.subscribe(str(AUDIO_BYTES), cb=on_chunk)
        await bus.nc.flush()
        with pytest.raises(ServiceError) as err:
            await bus.request(TTS_SPEAK, {"text": text, "stream": True}, reply_type=bytes)
        await asyncio.wait_for(finals.wait(), 30)
        await sub.unsubscribe()
    assert err.value.code == 413 and err.value.field == "text"
    assert "max_payload" in err.value.message and "reply_wav=false" in err.value.message


async def test_without_stream_nothing_is_published(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak"}})
    seen: list[bytes] = []

    async def on_chunk(msg: Any) -> None:
        seen.append(msg.data)

    async with osiris_runtime(config):
        sub = await bus.nc.subscribe(str(AUDIO_BYTES), cb=on_chunk)
        await bus.nc.flush()
        await bus.request(TTS_SPEAK, {"text": "Quiet. Not streamed."}, reply_type=bytes)
        # a streamed marker request afterwards: its chunks prove the subscription was live
        await bus.request(TTS_SPEAK, {"text": "Marker.", "stream": True,
                                      "utterance_id": "marker"}, reply_type=bytes)
        await bus.nc.flush()
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        await sub.unsubscribe()
    ids = {msgspec.json.decode(m, type=AudioChunk).utterance_id for m in seen}
    assert ids == {"marker"}

"""espeak-ng tts: real-time factor and time to first audio, whole vs streamed.

Baseline: the same text synthesised whole by the engine in one call (nothing to play until
it is all done). Against it: the engine sentence by sentence (what the actor does), and the
full path — `osiris.tts.speak` with `stream: true` through a real nats-server, timing the
first and last `AudioChunk` seen by a subscriber on `audio.bytes`.

    .venv/bin/python bench/tts.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from osiris_tts.audio import split_sentences
from osiris_tts.espeak import EspeakEngine

from osiris_contracts.messages import AudioChunk, TtsResult
from osiris_contracts.subjects import AUDIO_BYTES, TTS_SPEAK
from osiris_core.config import load_config
from osiris_core.nats.bus import Bus, connect
from osiris_core.nats.server import EmbeddedNats
from osiris_core.runtime.node import Runtime
from osiris_core.testing import write_config

SENTENCE = ("The index closed higher on heavy volume while traders waited for the central "
            "bank, and bond yields held steady.")
TEXTS = {
    "1 sentence": SENTENCE,
    "5 sentences": " ".join([SENTENCE] * 5),
    "20 sentences": " ".join([SENTENCE] * 20),
}


def engine_whole(engine: EspeakEngine, text: str) -> tuple[float, float, float]:
    """(total s, first audio s, audio s) for one call on the whole text."""
    t0 = time.perf_counter()
    pcm = engine.synthesize(text, exaggeration=0.5)
    total = time.perf_counter() - t0
    return total, total, len(pcm) / 2 / engine.sample_rate


def engine_sentences(engine: EspeakEngine, text: str) -> tuple[float, float, float]:
    """(total s, first sentence s, audio s) synthesising sentence by sentence."""
    t0 = time.perf_counter()
    first = 0.0
    samples = 0
    for i, s in enumerate(split_sentences(text)):
        samples += len(engine.synthesize(s, exaggeration=0.5)) // 2
        if i == 0:
            first = time.perf_counter() - t0
    return time.perf_counter() - t0, first, samples / engine.sample_rate


async def actor_streamed(bus: Bus, text: str, n: int) -> tuple[float, float, float]:
    """(last chunk s, first chunk s, audio s) through NATS, as a subscriber sees them."""
    uid = f"bench-{n}"
    first: float | None = None
    done = asyncio.Event()
    t0 = 0.0
    last = 0.0

    async def on_chunk(msg: Any) -> None:
        nonlocal first, last
        chunk = msgspec.json.decode(msg.data, type=AudioChunk)
        if chunk.utterance_id != uid:
            return
        now = time.perf_counter() - t0
        if first is None:
            first = now
        if chunk.final:
            last = now
            done.set()

    sub = await bus.nc.subscribe(str(AUDIO_BYTES), cb=on_chunk)
    await bus.nc.flush()
    t0 = time.perf_counter()
    result = await bus.request(TTS_SPEAK, {"text": text, "stream": True, "reply_wav": False,
                                           "utterance_id": uid}, reply_type=TtsResult)
    await asyncio.wait_for(done.wait(), 60)
    await sub.unsubscribe()
    assert first is not None
    return last, first, result.duration_s


def med(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    return (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
            statistics.median(r[2] for r in rows))


async def main(repeat: int) -> None:
    engine = EspeakEngine()
    engine.synthesize("warm up", exaggeration=0.5)
    results: dict[str, dict[str, tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="osiris-bench-tts-") as d, \
            EmbeddedNats(Path(d) / "nats") as srv:
        cfg = load_config(write_config(
            Path(d) / "osiris.toml", srv.url, ["tts"],
            {"tts": {"engine": "espeak", "rate_limit_per_s": 0.0}}))
        rt = Runtime(cfg)
        await rt.start()
        nc = await connect(srv.url, name="bench-tts")
        bus = Bus(nc)
        try:
            await actor_streamed(bus, "warm up.", -1)
            n = 0
            for label, text in TEXTS.items():
                rows: dict[str, list[tuple[float, float, float]]] = {
                    "engine whole (baseline)": [], "engine by sentence": [],
                    "actor streamed (NATS)": []}
                for _ in range(repeat):
                    rows["engine whole (baseline)"].append(engine_whole(engine, text))
                    rows["engine by sentence"].append(engine_sentences(engine, text))
                    n += 1
                    rows["actor streamed (NATS)"].append(await actor_streamed(bus, text, n))
                results[label] = {k: med(v) for k, v in rows.items()}
        finally:
            await nc.close()
            await rt.stop()

    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, espeak-ng "
          f"(espeakng-loader 0.2.4) {engine.sample_rate} Hz, voice {engine.voice}, "
          f"median of {repeat}")
    head = (f"{'text':<13} {'mode':<24} {'audio s':>8} {'total ms':>9} {'first ms':>9} "
            f"{'RTF':>7} {'first/base':>10}")
    print(head)
    print("-" * len(head))
    for label, modes in results.items():
        base_first = modes["engine whole (baseline)"][1]
        for mode, (total, first, audio) in modes.items():
            print(f"{label:<13} {mode:<24} {audio:>8.2f} {total * 1e3:>9.1f} {first * 1e3:>9.1f} "
                  f"{total / audio:>7.4f} {first / base_first:>9.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    asyncio.run(main(parser.parse_args().repeat))

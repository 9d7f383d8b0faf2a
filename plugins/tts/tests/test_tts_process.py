"""The tts actor as its own process (`osiris run --only tts`), its loop free while it speaks,
and pause/resume of its engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from osiris_tts.audio import read_wav, rms

from osiris_contracts.messages import TtsResult
from osiris_contracts.subjects import TTS_SPEAK
from osiris_core import Config
from osiris_core.nats.bus import Bus
from osiris_core.protocol import PauseOp, ResumeOp, StatusOp
from osiris_core.testing import OsirisProcess, write_config

LONG = " ".join(f"Sentence {i} is about the bond market and the yield curve today."
                for i in range(40))


async def test_tts_runs_in_its_own_process_and_joins_the_same_nats(
    tmp_path: Path, nats_url: str, bus: Bus
) -> None:
    # Another process's config may list every plugin: --only keeps this one to tts.
    path = write_config(tmp_path / "tts.toml", nats_url, ["tts", "hermes", "gateway"],
                        {"tts": {"engine": "espeak"}})
    with OsirisProcess(path, only=["tts"]):
        wav = await bus.request(TTS_SPEAK, {"text": "From another process."}, reply_type=bytes)
        status = await bus.control("tts", StatusOp())
    assert rms(read_wav(wav).frames) > 500
    assert status.status.facts["engine"] == "espeak"


async def test_the_event_loop_stays_free_while_a_long_text_is_synthesised(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak"}})
    order: list[str] = []
    async with osiris_runtime(config) as rt:
        actor = rt.cell("tts").actor

        async def speak() -> None:
            await bus.request(TTS_SPEAK, {"text": LONG, "reply_wav": False},
                              reply_type=TtsResult)
            order.append("speak")

        async def status_while_speaking() -> None:
            while actor.sentences_synthesised == 0:  # synthesis has begun
                await asyncio.sleep(0.001)
            await bus.control("tts", StatusOp())
            order.append(f"status after {actor.sentences_synthesised} of 40 sentences")

        await asyncio.wait_for(asyncio.gather(speak(), status_while_speaking()), 60)
    assert order[0].startswith("status") and order[1] == "speak", order


async def test_pause_releases_and_resume_reloads_the_engine(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    config = osiris_config(plugins=["tts"], tables={"tts": {"engine": "espeak"}})
    async with osiris_runtime(config):
        paused = await bus.control("tts", PauseOp())
        assert paused.status.state == "paused"
        resumed = await bus.control("tts", ResumeOp())
        assert resumed.status.state == "running" and resumed.status.facts["loaded"]
        wav = await bus.request(TTS_SPEAK, {"text": "Back to work."}, reply_type=bytes)
    assert rms(read_wav(wav).frames) > 500

"""osiris tts plugin: text to speech as an actor.

- `osiris.tts.speak` (`TtsRequest`) → the complete WAV as raw bytes (or a `TtsResult` when
  `reply_wav: false`); with `stream: true` every sentence is also published on `audio.bytes`
  as an `AudioChunk` (utterance_id, seq, base64 WAV) the moment it is synthesised.
- Engines: espeak-ng (CPU, the `espeakng-loader` wheel through ctypes, 22,050 Hz) and
  Chatterbox (GPU, its own environment, imported lazily); `[plugins.tts] engine` and
  `fallback` choose. See README.md.
- The audio console page lives at `static/audio_console.html` (`STATIC_DIR`); the gateway
  serves it as `/static/audio_console.html`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from osiris_contracts.subjects import register_subjects as register_subjects
from osiris_core import hookimpl
from osiris_core.nats.grants import NatsGrant

from .actor import TtsActor
from .config import TtsConfig

__all__ = ["AUDIO_CONSOLE", "STATIC_DIR", "TtsActor", "TtsConfig"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
AUDIO_CONSOLE = STATIC_DIR / "audio_console.html"


@hookimpl
def register_config(register: Callable[[type[TtsConfig]], None]) -> None:
    register(TtsConfig)


@hookimpl
def register_actors(register: Callable[[type[Any]], None]) -> None:
    register(TtsActor)


@hookimpl
def register_demo(register: Callable[[Callable[[Path], dict[str, Any]]], None]) -> None:
    register(_demo_settings)


def _demo_settings(data_dir: Path) -> dict[str, Any]:
    """The CPU demo speaks with espeak (no chatterbox probe, nothing to prepare)."""
    return {"engine": "espeak"}


@hookimpl
def register_nats_role(register: Any) -> None:
    """This plugin's NATS user and what it calls (`osiris nats-config`)."""
    register(NatsGrant("models", description="tts: speech"))

"""The engine interface and the choice between chatterbox and espeak that the config makes.

An engine is blocking code: the actor calls it on its own single engine thread, so the event
loop stays free and engines need not be thread-safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from .config import TtsConfig
from .errors import EngineUnavailable

__all__ = ["Engine", "EngineChoice", "EngineUnavailable", "choose_engine"]

log = logging.getLogger("osiris.tts")


class Engine(Protocol):
    """Text → int16 mono PCM at `sample_rate`. Called from one thread at a time."""

    name: str
    sample_rate: int
    supports_cloning: bool
    """Whether `ref_wav` changes the voice (espeak ignores it)."""
    device: str

    def synthesize(self, text: str, *, exaggeration: float, ref_wav: bytes | None) -> bytes:
        """Speak `text`; return little-endian int16 mono PCM. Raise on engine failure."""
        ...

    def close(self) -> None:
        """Release the library/model (and accelerator memory)."""
        ...


@dataclass(frozen=True)
class EngineChoice:
    """What `choose_engine` decided, for the log and the actor's health facts."""

    engine: Engine | None
    requested: str
    fallback_reason: str | None = None
    """Why chatterbox was not used when espeak stands in for it."""
    error: str | None = None
    """Why no engine is serving (every request then gets a 503 with this text)."""


def choose_engine(config: TtsConfig) -> EngineChoice:
    """Load the configured engine. Blocking (a model load): call it off the event loop.

    `espeak` → espeak. `chatterbox`/`auto` → chatterbox; if it cannot load, espeak only when
    `fallback = true`, otherwise no engine and an error that names the cause and the fix.
    """
    from .espeak import EspeakEngine  # light: a ctypes handle on the wheel's library

    requested = config.engine
    if requested == "espeak":
        return EngineChoice(EspeakEngine(config.voice, config.words_per_minute), requested)
    from .chatterbox import ChatterboxEngine

    try:
        return EngineChoice(
            ChatterboxEngine.load(config.chatterbox_checkpoint, config.chatterbox_device),
            requested)
    except EngineUnavailable as e:
        reason = str(e)
    if not config.fallback:
        error = (f"tts engine {requested!r} unavailable and [plugins.tts] fallback = false: "
                 f"{reason}")
        log.error("%s", error)
        return EngineChoice(None, requested, error=error)
    log.warning("tts: chatterbox unavailable (%s); falling back to espeak "
                "([plugins.tts] fallback = true)", reason)
    try:
        engine = EspeakEngine(config.voice, config.words_per_minute)
    except EngineUnavailable as e:
        return EngineChoice(None, requested, fallback_reason=reason,
                            error=f"no tts engine: chatterbox: {reason}; espeak: {e}")
    return EngineChoice(engine, requested, fallback_reason=reason)

"""`[plugins.tts]`: which engine, whether to fall back, and the request limits."""

from __future__ import annotations

from typing import Literal

from osiris_core import PluginConfig

EngineName = Literal["auto", "chatterbox", "espeak"]


class TtsConfig(PluginConfig, frozen=True, kw_only=True):
    engine: EngineName = "auto"
    """`auto`: chatterbox when it loads, else espeak (only if `fallback`); or force one."""
    fallback: bool = True
    """Use espeak when chatterbox cannot load. False: the actor answers 503 with the reason."""

    chatterbox_checkpoint: str = ""
    """Local Chatterbox folder (ve/t3_cfg/s3gen safetensors, tokenizer.json, conds.pt);
    empty: `ResembleAI/chatterbox` from the local hub cache (never downloaded here)."""
    chatterbox_device: str = "auto"
    """`auto` (cuda when available, else cpu), `cuda`, `cuda:1`, `cpu`, `mps`."""

    voice: str = "en"
    """espeak-ng voice name (`en`, `en-us`, `de`, ...)."""
    words_per_minute: int = 175
    """espeak-ng speaking rate (80-450)."""

    max_text_chars: int = 5000
    """Longer texts are refused with a 400 naming `text`."""
    max_ref_wav_bytes: int = 10 * 1024 * 1024
    """Largest decoded `ref_wav_b64` accepted (voice-cloning reference)."""
    max_chunk_chars: int = 200
    """Sentences longer than this are split at commas or spaces, so every `audio.bytes`
    chunk stays well under the NATS max_payload and the first one is ready soon."""

    rate_limit_per_s: float = 10.0
    """Sustained requests per second this actor accepts (token bucket); 0 turns it off."""
    rate_limit_burst: int = 20
    """Requests accepted at once before the sustained rate applies."""

    max_concurrency: int = 8
    """Requests in flight; synthesis itself is serialised on one engine thread."""

"""The tts actor: `osiris.tts.speak` → a complete WAV, and sentence chunks on `audio.bytes`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import time
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from osiris_contracts.messages import AudioChunk, TtsRequest, TtsResult
from osiris_contracts.subjects import AUDIO_BYTES, TTS_SPEAK
from osiris_core import Actor, BadRequest, ServiceError, Unavailable, service

from .audio import read_wav, split_sentences, wav_bytes
from .config import TtsConfig
from .engine import Engine, EngineChoice, choose_engine

__all__ = ["RateLimited", "TokenBucket", "TtsActor"]


class RateLimited(ServiceError):
    """More requests than `[plugins.tts] rate_limit_per_s` allows (429)."""

    code = 429


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `take()` is False when empty."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class TtsActor(Actor[TtsConfig]):
    name = "tts"
    description = "text to speech: complete WAV on request, sentence chunks on audio.bytes"

    async def on_start(self) -> None:
        # One engine thread: synthesis never blocks the loop, and engines need no locking.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tts-engine")
        self.bucket = TokenBucket(self.config.rate_limit_per_s, self.config.rate_limit_burst)
        self.utterances = 0
        self.sentences_synthesised = 0
        self.audio_seconds = 0.0
        self.choice = EngineChoice(None, self.config.engine, error="tts engine is loading")
        await self._load()

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        self.choice = await loop.run_in_executor(
            self.executor, choose_engine, self.config)
        if self.choice.engine is not None:
            self.log.info("tts: engine %s (%s, %d Hz)%s", self.choice.engine.name,
                          self.choice.engine.device, self.choice.engine.sample_rate,
                          " as fallback" if self.choice.fallback_reason else "")

    async def _release(self) -> None:
        engine = self.choice.engine
        if engine is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, engine.close)

    async def on_stop(self) -> None:
        await self._release()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def on_pause(self) -> None:
        await self._release()

    async def on_resume(self) -> None:
        await self._load()

    def facts(self) -> dict[str, Any]:
        engine = self.choice.engine
        return {
            "engine": engine.name if engine else None,
            "requested_engine": self.choice.requested,
            "fallback": self.config.fallback,
            "fallback_reason": self.choice.fallback_reason,
            "engine_error": self.choice.error,
            "loaded": engine is not None,
            "device": engine.device if engine else None,
            "sample_rate": engine.sample_rate if engine else None,
            "voice_cloning": bool(engine and engine.supports_cloning),
            "utterances": self.utterances,
            "sentences_synthesised": self.sentences_synthesised,
            "audio_seconds": round(self.audio_seconds, 3),
        }

    # --- the service ----------------------------------------------------------------------
    @service(TTS_SPEAK)
    async def speak(self, req: TtsRequest) -> bytes | TtsResult:
        """Synthesise sentence by sentence; stream each chunk when asked; reply with the WAV."""
        text, ref_wav = self._validate(req)
        engine = self._engine()
        if self.config.rate_limit_per_s > 0 and not self.bucket.take():
            raise RateLimited(
                f"tts rate limit: more than {self.config.rate_limit_per_s:g} requests/s "
                f"(burst {self.config.rate_limit_burst}); retry later",
                retry_after_s=round(1.0 / self.config.rate_limit_per_s, 3))
        utterance_id = req.utterance_id or uuid.uuid4().hex
        sentences = split_sentences(text, self.config.max_chunk_chars)
        loop = asyncio.get_running_loop()
        rate = engine.sample_rate
        parts: list[bytes] = []
        for seq, sentence in enumerate(sentences):
            pcm = await loop.run_in_executor(self.executor, functools.partial(
                engine.synthesize, sentence, exaggeration=req.exaggeration, ref_wav=ref_wav))
            self.sentences_synthesised += 1
            parts.append(pcm)
            if req.stream:
                chunk = AudioChunk(
                    utterance_id=utterance_id, seq=seq, sample_rate=rate, text=sentence,
                    wav_b64=base64.b64encode(wav_bytes(pcm, rate)).decode("ascii"),
                    final=seq == len(sentences) - 1)
                await self.publish(AUDIO_BYTES, chunk)
        pcm = b"".join(parts)
        seconds = len(pcm) / 2 / rate
        self.utterances += 1
        self.audio_seconds += seconds
        if not req.reply_wav:
            return TtsResult(utterance_id=utterance_id, chunks=len(sentences),
                             duration_s=round(seconds, 3), sample_rate=rate, engine=engine.name)
        wav = wav_bytes(pcm, rate)
        limit = self.ctx.bus.nc.max_payload
        if limit and len(wav) > limit:
            raise ServiceError(
                f"the WAV is {len(wav)} bytes ({seconds:.1f} s), more than the NATS max_payload "
                f"of {limit} bytes: shorten 'text', or send stream=true with reply_wav=false and "
                "join the chunks from audio.bytes", code=413, field="text")
        return wav

    def _engine(self) -> Engine:
        engine = self.choice.engine
        if engine is None:
            raise Unavailable(self.choice.error or "tts engine not loaded",
                              engine=self.choice.requested)
        return engine

    def _validate(self, req: TtsRequest) -> tuple[str, bytes | None]:
        text = req.text.strip()
        if not text:
            raise BadRequest("'text' is empty: give the words to speak", field="text")
        if len(text) > self.config.max_text_chars:
            raise BadRequest(
                f"'text' is {len(text)} characters; the limit is {self.config.max_text_chars} "
                "([plugins.tts] max_text_chars)", field="text")
        if not any(ch.isalnum() for ch in text):
            raise BadRequest("'text' has nothing speakable (no letters or digits)", field="text")
        # exaggeration and utterance_id are bounded by the TtsRequest contract (refused at
        # decode, naming the field); text's bound there is the wire's, max_text_chars ours
        return text, self._ref_wav(req.ref_wav_b64)

    def _ref_wav(self, b64: str | None) -> bytes | None:
        if b64 is None or not b64.strip():
            return None
        payload = b64.strip()
        if payload.startswith("data:") and "," in payload:  # a data: URL from a browser
            payload = payload.split(",", 1)[1]
        limit = self.config.max_ref_wav_bytes
        if len(payload) > limit * 4 // 3 + 4:
            raise BadRequest(f"'ref_wav_b64' is larger than {limit} bytes "
                             "([plugins.tts] max_ref_wav_bytes)", field="ref_wav_b64")
        try:
            data = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError) as e:
            raise BadRequest(f"'ref_wav_b64' is not valid base64: {e}",
                             field="ref_wav_b64") from None
        try:
            info = read_wav(data)
        except (wave.Error, EOFError) as e:
            raise BadRequest(f"'ref_wav_b64' is not a PCM WAV file: {e}",
                             field="ref_wav_b64") from None
        if info.n_frames == 0:
            raise BadRequest("'ref_wav_b64' holds no audio", field="ref_wav_b64")
        return data

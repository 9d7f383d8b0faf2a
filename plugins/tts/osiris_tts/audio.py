"""WAV in and out (16-bit PCM mono), loudness, and splitting text into speakable chunks."""

from __future__ import annotations

import array
import io
import math
import re
import sys
import wave

__all__ = ["WavInfo", "read_wav", "rms", "split_sentences", "wav_bytes"]


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """Little-endian int16 mono PCM → a complete RIFF/WAVE file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


class WavInfo:
    """What `read_wav` found: format and the raw frames."""

    def __init__(self, channels: int, sample_width: int, sample_rate: int, frames: bytes) -> None:
        self.channels = channels
        self.sample_width = sample_width
        self.sample_rate = sample_rate
        self.frames = frames

    @property
    def n_frames(self) -> int:
        return len(self.frames) // (self.channels * self.sample_width)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate if self.sample_rate else 0.0


def read_wav(data: bytes) -> WavInfo:
    """Parse a PCM WAV; raises `wave.Error`/`EOFError` when it is not one."""
    with wave.open(io.BytesIO(data), "rb") as w:
        return WavInfo(w.getnchannels(), w.getsampwidth(), w.getframerate(),
                       w.readframes(w.getnframes()))


def rms(pcm: bytes) -> float:
    """Root mean square of int16 samples (0 for silence, ~32767 for a full-scale square)."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples))


_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])[\"'\u201d\u2019)\]]*\s+|\s*\n\s*")
_SOFT_BREAK = re.compile(r"(?<=[,;:\u2013\u2014])\s+")


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Sentences in order; one longer than `max_chars` is cut at commas, then at spaces.

    Joining the pieces with spaces gives the text back (up to whitespace), so the chunks of a
    streamed utterance say exactly what the whole would.
    """
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        if not sentence:
            continue
        if len(sentence) <= max_chars:
            out.append(sentence)
            continue
        out.extend(_pack(_SOFT_BREAK.split(sentence), max_chars))
    return out


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Greedily join `parts` into pieces of at most `max_chars`, splitting words if needed."""
    pieces: list[str] = []
    current = ""
    for part in parts:
        words = part.split(" ") if len(part) > max_chars else [part]
        for word in words:
            while len(word) > max_chars:  # a single "word" longer than a chunk
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(word[:max_chars])
                word = word[max_chars:]
            candidate = f"{current} {word}" if current else word
            if len(candidate) <= max_chars:
                current = candidate
            else:
                pieces.append(current)
                current = word
    if current:
        pieces.append(current)
    return [p for p in pieces if p]

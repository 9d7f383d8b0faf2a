"""Constrained field types shared by the bus contracts and the gateway's HTTP bodies.

A value out of range is refused where the request is decoded, with its field named, before
any engine sees it (a negative temperature or a top_p of 7 used to reach the engine and
crash the actor).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

__all__ = [
    "Exaggeration",
    "MAX_EXAGGERATION",
    "MAX_NEW_TOKENS",
    "MAX_PROMPT_CHARS",
    "MAX_SPEECH_CHARS",
    "MAX_TEMPERATURE",
    "MaxNewTokens",
    "Prompt",
    "QueryLimit",
    "SpeechText",
    "StopStrings",
    "Temperature",
    "TopP",
    "UtteranceId",
]

MAX_PROMPT_CHARS = 200_000
MAX_NEW_TOKENS = 32_768
"""The wire's bound on `max_length`; each model actor narrows it to its configured cap
(`max_new_tokens_cap`) and to its model's context."""
MAX_TEMPERATURE = 2.0
MAX_EXAGGERATION = 2.0
"""Chatterbox's range (0..2, neutral 0.5); espeak maps it onto its pitch range."""
MAX_SPEECH_CHARS = 100_000
"""The wire's bound on `text`; the tts actor narrows it to `max_text_chars`."""

Prompt = Annotated[str, Meta(min_length=1, max_length=MAX_PROMPT_CHARS)]
MaxNewTokens = Annotated[int, Meta(ge=1, le=MAX_NEW_TOKENS,
                                   description="Most new tokens to generate.")]
Temperature = Annotated[float, Meta(ge=0.0, le=MAX_TEMPERATURE,
                                    description="Sampling temperature; 0 decodes greedily.")]
TopP = Annotated[float, Meta(gt=0.0, le=1.0, description="Nucleus sampling mass, in (0, 1].")]
StopStrings = Annotated[list[Annotated[str, Meta(max_length=256)]], Meta(max_length=16)]
"""At most 16 stop strings of at most 256 characters (the text is held back by the longest
one while streaming)."""
SpeechText = Annotated[str, Meta(max_length=MAX_SPEECH_CHARS)]
Exaggeration = Annotated[float, Meta(ge=0.0, le=MAX_EXAGGERATION)]
UtteranceId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
QueryLimit = Annotated[int, Meta(ge=1)]
"""At least one row; the store narrows it to its `max_query_rows`."""

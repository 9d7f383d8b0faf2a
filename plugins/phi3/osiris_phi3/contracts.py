"""phi3's own subjects: unguided completion (parity tests, benchmarks, raw use) and scoring
what is served (the trainer's gate)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from osiris_core.contracts import GenerateRequest
from osiris_core.subjects import Subject


class Phi3Completion(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Reply of `osiris.phi3.complete`: the text and the exact token ids generated."""

    generated_text: str
    token_ids: list[int]
    usage: dict[str, int]


PHI3_COMPLETE = Subject(
    "osiris.phi3.complete", "service", "phi3", GenerateRequest, Phi3Completion,
    description="unguided completion of the raw prompt, with token ids (parity, benchmarks)",
)


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    """The decision fields of a served reply (the rest — confidence, rationale — follows them
    and cannot change them)."""

    ticker: str
    action: str
    side: str
    new_stop_pct: float
    new_target_pct: float


MAX_SCORE_ROWS = 64
"""Rows per `osiris.phi3.score` request: a caller pages a held-out set through in chunks,
so no request holds the model for long and progress can be shown between them."""


class ScoreRow(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One held-out situation: the caller's prompt and the few-shot corrections (JSON) that
    phi3 would prepend to it (fixed by the caller, not read from the store)."""

    prompt: Annotated[str, msgspec.Meta(min_length=1, max_length=32_000)]
    shots: Annotated[list[str], msgspec.Meta(max_length=16)] = []


class ScoreRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`osiris.phi3.score`: the decision fields phi3 serves for each row, with an adapter.

    `adapter`: "live" (the one in service), "base" (none), or a loaded adapter's name;
    `adapter_file`: an `.onnx_adapter` to score in a shadow slot (loaded for this request,
    never served; wins over `adapter`)."""

    rows: Annotated[list[ScoreRow], msgspec.Meta(min_length=1, max_length=MAX_SCORE_ROWS)]
    adapter: str = "live"
    adapter_file: str | None = None
    max_length: Annotated[int, msgspec.Meta(ge=16, le=1024)] = 256
    """As the orchestrator asks (it bounds the retries, which run in full)."""


class ScoreReply(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per row the decision fields served (None: no attempt validated), which adapter scored
    them, and the time it took."""

    decisions: list[Decision | None]
    adapter: str | None
    seconds: float


PHI3_SCORE = Subject(
    "osiris.phi3.score", "service", "phi3", ScoreRequest, ScoreReply,
    description="decision fields phi3 serves for held-out prompts, with the live, base or a "
                "shadow adapter (the trainer's gate)",
)

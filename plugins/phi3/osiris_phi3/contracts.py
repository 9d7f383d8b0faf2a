"""phi3's own subjects: unguided completion (parity tests, benchmarks, raw use), generation
under a caller's grammar, and scoring what is served (the trainer's gate)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from osiris_contracts.messages import (
    MAX_PROMPT_CHARS,
    GenerateRequest,
    MaxNewTokens,
    Prompt,
    Temperature,
    TopP,
)
from osiris_core.protocol import ControlOp, NoArgs
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


GuidanceKind = Literal["json_schema", "lark_grammar", "regex"]
"""What onnxruntime-genai's llguidance accepts (0.18: "only json_schema, regex, and
lark_grammar are supported")."""

MAX_GRAMMAR_CHARS = 1_000_000
"""The wire's bound on `grammar`; the actor narrows it to `[plugins.phi3] max_grammar_chars`."""
MAX_SEED = 2**31 - 1
"""GenAI's `random_seed` is a C int: a larger one fails to convert inside the engine."""


class GuidedRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`osiris.phi3.guided`: a completion that the caller's grammar constrains, with no trade
    prompt, few-shot corrections or proposal schema of phi3's own.

    A subject of its own rather than fields added to `osiris.phi3.complete`: that one takes
    the core's `GenerateRequest`, shared with hermes, `osiris.phi3.generate` and the gateway,
    and is the raw path the parity test pins; guidance there would change a contract other
    callers decode, and its bounds and its NATS grant (the dgm role calls this one) could not
    be told apart.

    `prompt` is sent as it is, or, with `system` set (even to ""), as the user turn of the
    model's chat markup under that system text. `guidance` names the grammar's language;
    `grammar` is its text (bounded by `[plugins.phi3] max_grammar_chars`). Decoding is greedy
    at temperature 0; above it, sampling is seeded by `seed`, so the same request gives the
    same text. `adapter`: "live" (the one in service), "base" (none) or a loaded adapter's
    name."""

    prompt: Prompt
    guidance: GuidanceKind
    grammar: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_GRAMMAR_CHARS)]
    max_length: MaxNewTokens = 256
    temperature: Temperature = 0.0
    top_p: TopP | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEED)] = 0
    repetition_penalty: Annotated[float, msgspec.Meta(gt=0.0, le=2.0)] = 1.0
    """> 1 discourages repeated tokens (a small model loops without it); 1 is off."""
    system: Annotated[str, msgspec.Meta(max_length=MAX_PROMPT_CHARS)] | None = None
    adapter: str = "live"


class GuidedReply(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The generated text and token ids (end-of-text included when generated), usage, why it
    ended (`stop`: the model or the grammar ended it; `length`: max_length cut it, so the
    text may not be a full sentence of the grammar) and the adapter that generated it."""

    generated_text: str
    token_ids: list[int]
    usage: dict[str, int]
    finish_reason: Literal["stop", "length"]
    adapter: str | None


PHI3_GUIDED = Subject(
    "osiris.phi3.guided", "service", "phi3", GuidedRequest, GuidedReply,
    description="completion constrained by the caller's JSON schema, Lark grammar or regex, "
                "seeded (the dgm's typed edits)",
    idempotent=True,
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


class FewShot(msgspec.Struct, kw_only=True):
    """The feedback corrections a generate request would prepend now (JSON, oldest first),
    and their sha256 ('' for none): the dgm keys its reply cache by it."""

    few_shot: list[str] = []
    few_shot_sha256: str = ""


class FewShotOp(ControlOp[FewShot], tag="few_shot"):
    """`osiris.phi3.control` `few_shot`: what phi3 prepends to a prompt now."""

    args: NoArgs = NoArgs()

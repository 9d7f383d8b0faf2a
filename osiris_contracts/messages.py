"""Message contracts: every payload on the bus is one of these msgspec Structs.

Field names match the seeds' HTTP bodies so the gateway can pass bodies through unchanged.
Plugins may define further Structs; they register them with their subjects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from osiris_contracts.bounds import (
    MAX_EXAGGERATION,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_SPEECH_CHARS,
    MAX_TEMPERATURE,
    Exaggeration,
    MaxNewTokens,
    Prompt,
    QueryLimit,
    SpeechText,
    StopStrings,
    Temperature,
    TopP,
    UtteranceId,
)
from osiris_contracts.gpu import GpuActor, GpuDevice, GpuEvent, GpuStatus
from osiris_core.protocol import Contract

__all__ = [
    "AdapterPublished",
    "DgmDecision",
    "DgmEvent",
    "DgmVariant",
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
    "Advice",
    "AudioChunk",
    "GenerateChunk",
    "ProposalAssessed",
    "ProposalCreated",
    "RunRecord",
    "RunStep",
    "FeedbackAck",
    "FeedbackItem",
    "GenerateReply",
    "GenerateRequest",
    "GpuActor",
    "GpuDevice",
    "GpuEvent",
    "GpuStatus",
    "MarketTick",
    "ProposeReply",
    "ProposeRequest",
    "StoreQuery",
    "StoreRows",
    "TradeProposal",
    "TtsRequest",
    "TtsResult",
    "now_iso",
]


def now_iso() -> str:
    """Now as these messages' `timestamp` fields (and the store's `stored_at`) carry it: UTC,
    ISO 8601 with a `+00:00` offset. One format everywhere, because the feedback store and
    the dgm archive order rows by comparing these strings."""
    return datetime.now(UTC).isoformat()

# --- generation -------------------------------------------------------------------------


class GenerateRequest(Contract):
    """`osiris.hermes.generate` / `osiris.phi3.generate` request (seed `/generate/` body)."""

    prompt: Prompt
    max_length: MaxNewTokens = 256
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: StopStrings | None = None
    stream: bool = False


class GenerateReply(Contract):
    """Free-text reply of hermes (seed: `{"generated_text": ...}`)."""

    generated_text: str
    usage: dict[str, int] | None = None


class GenerateChunk(Contract):
    """One piece of a token stream. A request with `stream: true` gets these published to its
    reply inbox; the last has `done: true` and carries `usage` (and the full text)."""

    text: str
    index: int
    done: bool = False
    generated_text: str | None = None
    usage: dict[str, int] | None = None


class TradeProposal(Contract):
    """The seeds' Phi-3 proposal schema: every phi3 reply validates against it."""

    ticker: str
    action: str
    side: str
    new_stop_pct: float
    new_target_pct: float
    confidence: float
    rationale: str


class ProposeRequest(Contract):
    """`osiris.proposals.propose` request (seed `/propose_trade_adjustments/` body)."""

    prompt: Prompt
    max_length: MaxNewTokens = 256


class ProposeReply(Contract):
    """`osiris.proposals.propose` reply."""

    transaction_id: str
    phi3_proposal: TradeProposal
    hermes_assessment: str


class ProposalCreated(Contract):
    """`phi3.proposal.created` (durable; Nats-Msg-Id = transaction_id)."""

    transaction_id: str
    timestamp: str
    prompt: str
    phi3_proposal: TradeProposal


class ProposalAssessed(Contract):
    """`phi3.proposal.assessed` (durable; Nats-Msg-Id = transaction_id + ":assessed")."""

    transaction_id: str
    timestamp: str
    phi3_proposal: TradeProposal
    hermes_assessment: str


class Advice(Contract):
    """`advice.generated`: the risk gate's verdict on a proposal (durable)."""

    transaction_id: str
    timestamp: str
    approved: bool
    reasons: list[str] = []
    phi3_proposal: TradeProposal | None = None


class RunStep(Contract):
    """One step of an orchestrator run: name, outcome and timing."""

    name: str
    status: str
    started: str
    duration_ms: float
    error: str | None = None


class RunRecord(Contract):
    """`osiris.runs.completed`: one orchestrator workflow run (durable; id = run_id)."""

    run_id: str
    query: str
    status: str
    started: str
    finished: str
    steps: list[RunStep] = []
    transaction_id: str | None = None
    error: str | None = None


class AdapterPublished(Contract):
    """`osiris.adapters.published`: a new eval-gated adapter (durable; id = version)."""

    version: str
    path: str
    base_model: str
    created: str
    metrics: dict[str, float] = {}


# --- feedback and store -----------------------------------------------------------------


class FeedbackItem(Contract):
    """Seed `FeedbackItem`: a correction, rating or comment on a proposal."""

    transaction_id: str
    feedback_type: str
    feedback_content: Any = None
    timestamp: str | None = None
    corrected_proposal: TradeProposal | None = None
    feedback_id: str | None = None
    """Idempotency key: a client that retries with the same id is stored once. The feedback
    actor assigns one when absent (the stored event always carries it)."""


class FeedbackAck(Contract):
    """Seed reply of `/feedback/phi3/`, sent only once the item is durable."""

    message: str
    transaction_id: str
    feedback_id: str | None = None
    """The stored item's id (resubmit with it to retry safely)."""
    transaction_known: bool | None = None
    """False when no stored proposal has this transaction_id (the item is kept, unlinked)."""


class StoreQuery(Contract):
    """`osiris.store.query`: read rows of one table, one page per request.

    A reply carries at most `limit` rows and never more bytes than the NATS server's
    `max_payload`: when the rows asked for would not fit, a `paged` query (or one with a
    `cursor`) gets the rows that fit, `truncated` and a `next_cursor`; any other is a 413
    saying how many rows fit and how to page (a client that reads one reply is never handed
    part of what it asked for without knowing). Read a whole result with
    `osiris_contracts.store.iter_rows` / `read_rows`.
    """

    table: str
    filter: str | None = None
    limit: QueryLimit = 100
    """Most rows wanted in this page (a page may hold fewer: replies are capped by bytes)."""
    order_by: str | None = None
    descending: bool = True
    cursor: str | None = None
    """`next_cursor` of the previous page (same table, order_by and descending), or None
    for the first page. Opaque: a position in the (order_by, id) order, so rows written
    between pages are neither repeated nor shift the pages."""
    paged: bool = False
    """The caller follows `next_cursor`: a reply too large for max_payload is cut to a
    page instead of refused (implied by a `cursor`)."""


class StoreRows(Contract):
    """Rows returned by `osiris.store.query`."""

    table: str
    rows: list[dict[str, Any]]
    next_cursor: str | None = None
    """Pass as `StoreQuery.cursor` for the rows after these; None: no more rows."""
    truncated: bool = False
    """True when the page stopped short of `limit` because the reply would have exceeded
    the server's max_payload (more rows follow: see `next_cursor`)."""


# --- market, voice -----------------------------------------------------------------


class MarketTick(Contract):
    """One OHLCV bar on `market.ticks`."""

    timestamp: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    symbol: str = "SIM"


class TtsRequest(Contract):
    """`osiris.tts.speak` request (seed `/speak` body)."""

    text: SpeechText
    exaggeration: Exaggeration = 0.5
    ref_wav_b64: str | None = None
    stream: bool = False
    """Also publish the utterance on `audio.bytes`, one `AudioChunk` per sentence as each is
    ready (the first before the rest is synthesised)."""
    utterance_id: UtteranceId | None = None
    """Id of the streamed chunks (so a caller can pick its utterance out of `audio.bytes`);
    a random hex id when absent."""
    reply_wav: bool = True
    """False: reply with a small JSON `TtsResult` instead of the WAV (for callers that only
    stream, e.g. the orchestrator speaking assessments; long texts overflow max_payload)."""


class TtsResult(Contract):
    """`osiris.tts.speak` reply when the request says `reply_wav: false`."""

    utterance_id: str
    chunks: int
    duration_s: float
    sample_rate: int
    engine: str


class AudioChunk(Contract):
    """`audio.bytes`: a sentence-sized WAV chunk of one utterance, in order by `seq`."""

    utterance_id: str
    seq: int
    wav_b64: str
    sample_rate: int
    final: bool = False
    text: str | None = None


# --- self-improvement (dgm) ----------------------------------------------------------------
DgmDecision = Literal["pending", "seed", "noop", "error", "rejected", "archived", "accepted",
                      "shadow", "live", "kept", "rolled_back"]
"""A variant's fate: `pending` while scored; `noop` (empty diff), `error` (the planner or the
evaluation failed), `rejected` (a check, the cascade or a violation in shadow), `archived`
(not shown better than its parent), `accepted` (better than its parent), `shadow`, `live`
(promoted, monitored), `kept` (stays live), `rolled_back`; the shipped policy is `seed`."""


class DgmVariant(msgspec.Struct, kw_only=True):
    """One archived variant (a row of `dgm_archive`)."""

    id: str
    parent: str | None
    planner: str
    diff: str = ""
    decision: DgmDecision = "pending"
    reason: str = ""
    why: str = ""
    """The planner's own reason for the change (the `llm` planner's `why`); empty if none."""
    iteration: int = 0
    source_sha256: str = ""
    data_sha256: str = ""
    model_key: str = ""
    """phi3 model, adapter and length the rewards were computed with: rewards compare only
    under the same data and model."""
    lint: dict[str, float] = {}
    """ruff_issues, pylint score."""
    reward_cheap: float | None = None
    reward_full: float | None = None
    sub_rewards: list[float] = []
    ci_low: float | None = None
    ci_high: float | None = None
    trades: int = 0
    violations: int = 0
    live: dict[str, Any] = {}
    """Live comparison against the variant it replaced (pairs, mean difference, interval)."""
    created: str = ""
    decided: str = ""
    revision: int = 0
    """Grows with every change of the record: a store keeps the highest."""


class DgmEvent(msgspec.Struct, kw_only=True):
    """On `osiris.dgm.events`: what happened to which variant, with its whole record."""

    kind: str
    """proposed | rejected | archived | noop | shadow | applied | kept | rolled_back"""
    variant: DgmVariant
    timestamp: str
    message: str = ""

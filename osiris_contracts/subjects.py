"""The application's subjects (DESIGN §4): generation, proposals, feedback, the store, speech,
the gpu supervisor, adapters, self-improvement and market ticks. Every plugin registers all of
them (`register_shared`), so any process that loads a plugin knows the whole catalogue, as
the fixed contracts require, while the core knows none of them."""

from __future__ import annotations

from collections.abc import Callable

from osiris_contracts import messages as c
from osiris_core.hookspecs import hookimpl
from osiris_core.subjects import Subject

__all__ = ["ADAPTERS_PUBLISHED", "ADVICE_GENERATED", "AUDIO_BYTES", "DGM_EVENTS",
           "FEEDBACK_SUBMIT", "FEEDBACK_SUBMITTED", "GPU_EVENTS", "GPU_STATUS",
           "HERMES_GENERATE", "MARKET_TICKS", "PHI3_GENERATE", "PROPOSALS_PROPOSE",
           "PROPOSAL_ASSESSED", "PROPOSAL_CREATED", "RUNS_COMPLETED", "SHARED_SUBJECTS",
           "STORE_QUERY", "TTS_SPEAK", "register_shared",
           "register_subjects"]

HERMES_GENERATE = Subject(
    "osiris.hermes.generate", "service", "hermes", c.GenerateRequest, c.GenerateReply,
    description="free-text generation (token stream to a reply inbox when stream=true)",
    idempotent=True,
)

PHI3_GENERATE = Subject(
    "osiris.phi3.generate", "service", "phi3", c.GenerateRequest, c.TradeProposal,
    description="a trade proposal that always validates against the schema",
    idempotent=True,
)

PROPOSALS_PROPOSE = Subject(
    "osiris.proposals.propose", "service", "orchestrator", c.ProposeRequest, c.ProposeReply,
    description="phi3 proposal + hermes assessment with a transaction_id",
    idempotent=True,
)

FEEDBACK_SUBMIT = Subject(
    "osiris.feedback.submit", "service", "feedback", c.FeedbackItem, c.FeedbackAck,
    description="store a FeedbackItem; acknowledged only once durable",
)

TTS_SPEAK = Subject(
    "osiris.tts.speak", "service", "tts", c.TtsRequest, None,
    description="text to a complete WAV (bytes)",
    idempotent=True,
)

STORE_QUERY = Subject(
    "osiris.store.query", "service", "feedback", c.StoreQuery, c.StoreRows,
    description="read rows of a LanceDB table",
    idempotent=True,
)

GPU_STATUS = Subject(
    "osiris.gpu.status", "service", "gpu", None, c.GpuStatus,
    description="VRAM budget, usage and per-actor state",
)

MARKET_TICKS = Subject("market.ticks", "event", "sim", c.MarketTick, description="OHLCV bars")

PROPOSAL_CREATED = Subject(
    "phi3.proposal.created", "event", "orchestrator", c.ProposalCreated, durable=True,
    description="new proposal"
)

PROPOSAL_ASSESSED = Subject(
    "phi3.proposal.assessed", "event", "orchestrator", c.ProposalAssessed, durable=True,
    description="proposal with hermes assessment",
)

FEEDBACK_SUBMITTED = Subject(
    "phi3.feedback.submitted", "event", "feedback", c.FeedbackItem, durable=True,
    description="a stored FeedbackItem",
)

ADVICE_GENERATED = Subject(
    "advice.generated", "event", "orchestrator", c.Advice, durable=True,
    description="risk-gate advice"
)

AUDIO_BYTES = Subject("audio.bytes", "event", "tts", c.AudioChunk, description="base64 WAV chunks")

RUNS_COMPLETED = Subject(
    "osiris.runs.completed", "event", "orchestrator", c.RunRecord, durable=True,
    description="an orchestrator run record",
)

ADAPTERS_PUBLISHED = Subject(
    "osiris.adapters.published", "event", "trainer", c.AdapterPublished, durable=True,
    description="a new eval-gated adapter",
)

GPU_EVENTS = Subject(
    "osiris.gpu.events", "event", "gpu", c.GpuEvent,
    description="over_budget / paused / resumed / cannot_fit",
)

DGM_EVENTS = Subject(
    "osiris.dgm.events", "event", "dgm", c.DgmEvent, durable=True,
    description="self-improvement proposed / applied / rolled back",
)

SHARED_SUBJECTS: tuple[Subject, ...] = (
    HERMES_GENERATE, PHI3_GENERATE, PROPOSALS_PROPOSE, FEEDBACK_SUBMIT, TTS_SPEAK, STORE_QUERY,
    GPU_STATUS, MARKET_TICKS, PROPOSAL_CREATED, PROPOSAL_ASSESSED, FEEDBACK_SUBMITTED,
    ADVICE_GENERATED, AUDIO_BYTES, RUNS_COMPLETED, ADAPTERS_PUBLISHED, GPU_EVENTS, DGM_EVENTS,
)


def register_shared(register: Callable[[Subject], None]) -> None:
    """Register every shared subject (a plugin's `register_subjects` calls it; registering
    one twice is harmless)."""
    for subject in SHARED_SUBJECTS:
        register(subject)


@hookimpl
def register_subjects(register: Callable[[Subject], None]) -> None:
    """The hook a plugin without subjects of its own borrows (`from osiris_contracts.subjects
    import register_subjects as register_subjects`), so its process knows the catalogue."""
    register_shared(register)

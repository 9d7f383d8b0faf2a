"""Every subject and stream name in one place (a typo in a subject silently loses messages).

A `Subject` says what travels on it, who owns it and whether JetStream keeps it. The core's
catalogue below holds the fixed contracts of DESIGN §4; plugins add theirs through the
`register_subjects` hook. `osiris subjects` prints the merged catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from osiris_core import contracts as c
from osiris_core import protocol as p

__all__ = [
    "ACTOR_WANTED",
    "ADAPTERS_PUBLISHED",
    "ADVICE_GENERATED",
    "AUDIO_BYTES",
    "CORE_SUBJECTS",
    "DEADLETTER",
    "DGM_EVENTS",
    "FEEDBACK_SUBMIT",
    "FEEDBACK_SUBMITTED",
    "GPU_EVENTS",
    "GPU_STATUS",
    "HERMES_GENERATE",
    "MARKET_TICKS",
    "PHI3_GENERATE",
    "PROPOSALS_PROPOSE",
    "PROPOSAL_ASSESSED",
    "PROPOSAL_CREATED",
    "RUNS_COMPLETED",
    "RUNTIME_STATUS",
    "STORE_QUERY",
    "TTS_SPEAK",
    "Catalogue",
    "Subject",
    "REQUEST_ID_HEADER",
    "cancel",
    "control",
    "runtime_profile",
    "is_idempotent",
    "starting",
    "stream_name",
]

Kind = Literal["service", "event"]


@dataclass(frozen=True)
class Subject:
    """A NATS subject with its contract.

    `request`/`reply` are msgspec Struct types (for events, `request` is the event payload).
    `durable` events are captured by the JetStream stream `stream` and deduplicated by
    `Nats-Msg-Id`.
    """

    name: str
    kind: Kind
    owner: str
    request: type[Any] | None = None
    reply: type[Any] | None = None
    durable: bool = False
    stream: str | None = None
    description: str = ""
    idempotent: bool = False
    """A service whose request may run twice without harm (generation, a read): callers
    re-send it to another replica when the one serving it dies (see `osiris_core.nats.watch`)."""

    def __post_init__(self) -> None:
        if self.durable and self.kind != "event":
            raise ValueError(f"{self.name}: only events can be durable")
        if self.idempotent and self.kind != "service":
            raise ValueError(f"{self.name}: only services can be idempotent")
        if self.durable and self.stream is None:
            object.__setattr__(self, "stream", stream_name(self.name))

    def __str__(self) -> str:
        return self.name


def stream_name(subject: str) -> str:
    """JetStream stream that captures a durable subject: `OSIRIS_` + upper-cased tokens."""
    base = subject.removeprefix("osiris.")
    return "OSIRIS_" + base.replace(".", "_").replace("*", "ANY").replace(">", "ALL").upper()


def control(actor: str) -> str:
    """`osiris.<actor>.control`: pause / resume / status / actor-specific ops."""
    return f"osiris.{actor}.control"


REQUEST_ID_HEADER = "Osiris-Request-Id"
"""Header a caller may set on a request so that it can later cancel it (`cancel`)."""


def cancel(actor: str) -> str:
    """`osiris.<actor>.cancel`: fire-and-forget `CancelRequest` — the caller (e.g. the gateway
    after its HTTP client disconnected) gave up on the request it sent with
    `Osiris-Request-Id: <request_id>`; an actor may stop working on it."""
    return f"osiris.{actor}.cancel"


PROFILE_PREFIX = "osiris.runtime.profile."


def runtime_profile(node: str) -> str:
    """`osiris.runtime.profile.<node>`: the runtime process named `node` answers a
    `ProfileArgs` with a `ProfileResult` (a live profile of every thread of that process)."""
    return PROFILE_PREFIX + node


STARTING_PREFIX = "osiris.runtime.starting."


def starting(subject: str) -> str:
    """`osiris.runtime.starting.<subject>`: a replica whose actor is still starting answers
    here (a `StartingReply`), so a caller that found no responder on `subject` waits for it."""
    return STARTING_PREFIX + subject


# --- services (request-reply) -----------------------------------------------------------
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
RUNTIME_STATUS = Subject(
    "osiris.runtime.status", "service", "runtime", None, p.NodeStatus,
    description="every runtime process answers (scatter-gather): plugins and actor states",
)

# --- events -----------------------------------------------------------------------------
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
ACTOR_WANTED = Subject(
    "osiris.runtime.wanted", "event", "runtime", p.ActorWanted,
    description="a request waits for a paused actor (the gpu supervisor resumes it)",
)
DGM_EVENTS = Subject(
    "osiris.dgm.events", "event", "dgm", c.DgmEvent, durable=True,
    description="self-improvement proposed / applied / rolled back",
)
DEADLETTER = Subject(
    "osiris.deadletter", "event", "runtime", p.DeadLetter, durable=True,
    description="a durable event that failed max_deliver times, moved aside (with its error)",
)

CORE_SUBJECTS: tuple[Subject, ...] = (
    HERMES_GENERATE, PHI3_GENERATE, PROPOSALS_PROPOSE, FEEDBACK_SUBMIT, TTS_SPEAK,
    STORE_QUERY, GPU_STATUS, RUNTIME_STATUS,
    MARKET_TICKS, PROPOSAL_CREATED, PROPOSAL_ASSESSED, FEEDBACK_SUBMITTED, ADVICE_GENERATED,
    AUDIO_BYTES, RUNS_COMPLETED, ADAPTERS_PUBLISHED, GPU_EVENTS, DGM_EVENTS, ACTOR_WANTED,
    DEADLETTER,
)

_IDEMPOTENT: set[str] = {s.name for s in CORE_SUBJECTS if s.idempotent}


def is_idempotent(subject: Subject | str) -> bool:
    """Whether requests on `subject` may be re-sent to another replica (core subjects, and
    those of every plugin whose catalogue this process built)."""
    if isinstance(subject, Subject):
        return subject.idempotent
    return subject in _IDEMPOTENT


class Catalogue:
    """The merged set of subjects: the core's plus those registered by plugins."""

    def __init__(self, subjects: Iterable[Subject] = CORE_SUBJECTS) -> None:
        self._by_name: dict[str, Subject] = {}
        for s in subjects:
            self.add(s)

    def add(self, subject: Subject) -> None:
        known = self._by_name.get(subject.name)
        if known is not None and known != subject:
            raise ValueError(f"subject {subject.name!r} registered twice with different contracts")
        self._by_name[subject.name] = subject
        if subject.idempotent:
            _IDEMPOTENT.add(subject.name)

    def get(self, name: str) -> Subject | None:
        return self._by_name.get(name)

    def __iter__(self) -> Any:
        return iter(sorted(self._by_name.values(), key=lambda s: (s.kind, s.name)))

    def __len__(self) -> int:
        return len(self._by_name)

    def streams(self) -> dict[str, list[str]]:
        """Stream name → subjects it captures, for every durable subject."""
        out: dict[str, list[str]] = {}
        for s in self._by_name.values():
            if s.durable and s.stream:
                out.setdefault(s.stream, []).append(s.name)
        return {k: sorted(v) for k, v in sorted(out.items())}

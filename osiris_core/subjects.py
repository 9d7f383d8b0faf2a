"""Every subject and stream name in one place (a typo in a subject silently loses messages).

A `Subject` says what travels on it, who owns it and whether JetStream keeps it. The core's
catalogue below holds the fixed contracts of DESIGN §4; plugins add theirs through the
`register_subjects` hook. `osiris subjects` prints the merged catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from osiris_core import protocol as p

__all__ = [
    "ACTOR_WANTED",
    "CORE_SUBJECTS",
    "DEADLETTER",
    "RUNTIME_STATUS",
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
RUNTIME_STATUS = Subject(
    "osiris.runtime.status", "service", "runtime", None, p.NodeStatus,
    description="every runtime process answers (scatter-gather): plugins and actor states",
)

ACTOR_WANTED = Subject(
    "osiris.runtime.wanted", "event", "runtime", p.ActorWanted,
    description="a request waits for a paused actor (whoever paused it may resume it)",
)
DEADLETTER = Subject(
    "osiris.deadletter", "event", "runtime", p.DeadLetter, durable=True,
    description="a durable event that failed max_deliver times, moved aside (with its error)",
)

CORE_SUBJECTS: tuple[Subject, ...] = (RUNTIME_STATUS, ACTOR_WANTED, DEADLETTER)
"""The runtime's own subjects; the application's live in `osiris_contracts.subjects`,
registered by the plugins that use them."""

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


if not TYPE_CHECKING:  # hidden from mypy, which would accept any name of this module

    def __getattr__(name: str) -> object:
        """The application's names that moved to `osiris_contracts` (deprecated here)."""
        from osiris_core.moved import moved_name

        return moved_name(__name__, name)

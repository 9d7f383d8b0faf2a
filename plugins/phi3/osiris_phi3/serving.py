"""How phi3 turns a prompt into a proposal: the chat prompt, the guidance schema (ticker
grounding included), each attempt's decoding and the validation after it.

One place, used by the actor when it serves and by `score` when the trainer's gate asks how
an adapter does on what users are served: a gate that scored any other path (another engine,
precision, prompt or decoding) could publish an adapter that changes nothing users get.
Synchronous: the actor runs it from a thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from osiris_contracts.messages import TradeProposal

from .config import Phi3Config
from .contracts import Decision
from .engine import Phi3Engine
from .prompt import ChatFormat, chat_prompt, user_prompt
from .schema import named_tickers, proposal_schema, validate

DECISION_END = ',"confidence":'
"""The schema's key order (ticker, action, side, stop, target, confidence, rationale): once
this is written, every decision field of a reply is decided."""


@dataclass(frozen=True)
class Attempt:
    """What one attempt produced: the token ids, the text, and the proposal (None when the
    text did not validate; `error` says why)."""

    ids: list[int]
    text: str
    proposal: TradeProposal | None
    error: str = ""
    truncated: bool = False


@dataclass(frozen=True)
class ServedPath:
    """The serving settings of `[plugins.phi3]` that shape a reply."""

    system: str
    chat_format: ChatFormat
    ground_ticker: bool
    temperature: float
    retry_temperature: float
    retries: int
    repetition_penalty: float
    max_stop_pct: float
    max_target_pct: float
    rationale_max_chars: int
    _plain_schema: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plain_schema", self._schema_json(None))

    @classmethod
    def from_config(cls, c: Phi3Config, chat_format: ChatFormat) -> ServedPath:
        return cls(system=c.system_prompt, chat_format=chat_format, ground_ticker=c.ground_ticker,
                   temperature=c.temperature, retry_temperature=c.retry_temperature,
                   retries=max(0, c.retries), repetition_penalty=c.repetition_penalty,
                   max_stop_pct=c.max_stop_pct, max_target_pct=c.max_target_pct,
                   rationale_max_chars=c.rationale_max_chars)

    @property
    def attempts(self) -> int:
        return 1 + self.retries

    def prompt(self, prompt: str, shots: Sequence[str]) -> str:
        """The full text the model reads: few-shot corrections (JSON) and the caller's prompt
        in the model's chat markup."""
        return chat_prompt(self.system, user_prompt(prompt, shots), self.chat_format)

    def schema(self, prompt: str) -> str:
        """The guidance for a caller's prompt: `ticker` narrowed to the symbols it names
        (with `ground_ticker`; not the few-shot ones), the configured bounds otherwise."""
        tickers = named_tickers(prompt) if self.ground_ticker else []
        return self._schema_json(tickers) if tickers else self._plain_schema

    def _schema_json(self, tickers: list[str] | None) -> str:
        return json.dumps(proposal_schema(
            max_stop_pct=self.max_stop_pct, max_target_pct=self.max_target_pct,
            rationale_max_chars=self.rationale_max_chars, tickers=tickers))

    def temperature_of(self, attempt: int, requested: float | None) -> float:
        """Attempt 0 decodes as asked (the configured temperature when the request sets none:
        greedy by default); a retry samples at `retry_temperature` with the attempt as seed."""
        if attempt > 0:
            return self.retry_temperature
        return self.temperature if requested is None else requested

    def attempt(self, engine: Phi3Engine, ids: list[int], schema: str, attempt: int, *,
                max_new: int, adapter: str | None, temperature: float | None = None,
                top_p: float | None = None) -> Attempt:
        """One guided generation and its validation."""
        out, text = engine.generate(
            ids, max_new=max_new, schema=schema, adapter=adapter,
            temperature=self.temperature_of(attempt, temperature), top_p=top_p, seed=attempt,
            repetition_penalty=self.repetition_penalty)
        try:
            return Attempt(out, text, validate(text))
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            truncated = isinstance(e, msgspec.DecodeError) and "truncated" in str(e)
            return Attempt(out, text, None, f"{e} in {text[:200]!r}", truncated)


def decision_of(text: str) -> Decision | None:
    """The decision fields at the opening of a reply whose tail may not parse (the lab
    diagnostic reads unguided replies so); None when they are not all there."""
    head = text.split(DECISION_END, 1)[0] + "}"
    try:
        return msgspec.json.decode(head.encode(), type=Decision)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def decide(engine: Phi3Engine, path: ServedPath, prompt: str, shots: Sequence[str], *,
           adapter: str | None, max_new: int = 256) -> Decision | None:
    """The decision fields of what phi3 serves for `prompt` with these few-shot corrections
    and adapter: the actor's attempts exactly (a retry samples, seeded by its number), so a
    reply the actor would have retried is scored as retried. None when no attempt validates
    (the actor's 502)."""
    ids = engine.encode(path.prompt(prompt, shots), max_new)
    schema = path.schema(prompt)
    for attempt in range(path.attempts):
        got = path.attempt(engine, ids, schema, attempt, max_new=max_new, adapter=adapter)
        if got.proposal is not None:
            return Decision(**{f: getattr(got.proposal, f) for f in Decision.__struct_fields__})
    return None


def decide_all(engine: Phi3Engine, path: ServedPath, rows: Sequence[tuple[str, Sequence[str]]],
               *, adapter: str | None, max_new: int = 256,
               progress: Callable[[int], None] | None = None) -> list[Decision | None]:
    """`decide` for each (prompt, shots) row, calling `progress(done)` after each."""
    out: list[Decision | None] = []
    for prompt, shots in rows:
        out.append(decide(engine, path, prompt, shots, adapter=adapter, max_new=max_new))
        if progress is not None:
            progress(len(out))
    return out

"""How a reply is compared with a correction, and how the trainer's own copy of the model
answers (the lab diagnostic; the gate scores where phi3 serves, `served.py`).

Agreement is over the four `DECISION_FIELDS` — action and side equal, stop and target
within a tolerance — never the ticker: served proposals get it from the schema, so a ticker
match says nothing about what the model learnt. A missing reply agrees on nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from osiris_phi3.prompt import ChatFormat
from osiris_phi3.schema import validate

from osiris_contracts.messages import TradeProposal

from .config import STOP_TOLERANCE, TARGET_TOLERANCE

DECISION_FIELDS = ("action", "side", "new_stop_pct", "new_target_pct")
"""What the house decides; the ticker is grounded by the schema when served."""


@dataclass(frozen=True)
class Scoring:
    """How replies are produced and compared."""

    system: str
    chat_format: ChatFormat
    max_new_tokens: int = 96
    repetition_penalty: float = 1.1
    stop_tolerance: float = STOP_TOLERANCE
    target_tolerance: float = TARGET_TOLERANCE
    max_length: int = 1024
    batch_size: int = 8


def parse_reply(text: str) -> TradeProposal | None:
    """The proposal in a reply (the outermost `{…}`), or None when there is none that
    validates."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return validate(text[start:end + 1])
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


class Decided(Protocol):
    """Anything carrying the decision fields: a proposal, or phi3's served `Decision`."""

    @property
    def action(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def new_stop_pct(self) -> float: ...
    @property
    def new_target_pct(self) -> float: ...


def within(got: float, want: float, tolerance: float) -> bool:
    """|got − want| ≤ tolerance, inclusive in decimal terms (2.2 is within 0.2 of 2.0)."""
    return abs(got - want) <= tolerance + 1e-9


def field_hits(got: Decided | None, want: Decided, *, stop_tolerance: float = STOP_TOLERANCE,
               target_tolerance: float = TARGET_TOLERANCE) -> dict[str, bool]:
    """Whether `got` agrees with `want` on each of `DECISION_FIELDS` (stop and target within
    their tolerances, in percentage points); no proposal agrees on nothing."""
    if got is None:
        return dict.fromkeys(DECISION_FIELDS, False)
    return {"action": got.action == want.action,
            "side": got.side.upper() == want.side.upper(),
            "new_stop_pct": within(got.new_stop_pct, want.new_stop_pct, stop_tolerance),
            "new_target_pct": within(got.new_target_pct, want.new_target_pct, target_tolerance)}


def decision_agreement(got: Decided | None, want: Decided, *,
                       stop_tolerance: float = STOP_TOLERANCE,
                       target_tolerance: float = TARGET_TOLERANCE) -> float:
    """Share of `DECISION_FIELDS` on which `got` agrees with `want` (`field_hits`)."""
    hits = field_hits(got, want, stop_tolerance=stop_tolerance,
                      target_tolerance=target_tolerance)
    return sum(hits.values()) / len(hits)


def logprob(model: Any, tok: Any, prompt: str, completion: str, max_length: int) -> tuple[float, int]:
    """Sum of log-probabilities of `completion`'s tokens after `prompt`, and their count."""
    import torch

    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tok(completion, add_special_tokens=False)["input_ids"]
    ids = (p_ids + c_ids)[-max_length:]
    n_c = min(len(c_ids), len(ids) - 1)
    x = torch.tensor([ids], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=x).logits[0, :-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(1, x[0, 1:][:, None])[:, 0][-n_c:]
    return float(picked.sum()), n_c


def generate(model: Any, tok: Any, prompts: list[str], s: Scoring) -> list[str]:
    """Greedy replies to `prompts`, in batches (left-padded)."""
    import torch

    out: list[str] = []
    side = tok.padding_side
    tok.padding_side = "left"
    try:
        for i in range(0, len(prompts), s.batch_size):
            batch = tok(prompts[i:i + s.batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                ids = model.generate(**batch, max_new_tokens=s.max_new_tokens, do_sample=False,
                                     temperature=None, top_p=None, top_k=None,
                                     repetition_penalty=s.repetition_penalty,
                                     pad_token_id=tok.pad_token_id)
            new = ids[:, batch["input_ids"].shape[1]:]
            out += tok.batch_decode(new, skip_special_tokens=True)
    finally:
        tok.padding_side = side
    return out

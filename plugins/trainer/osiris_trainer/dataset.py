"""Feedback corrections → training examples (prompt, chosen, rejected), split for the gate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import msgspec
from osiris_phi3.prompt import user_prompt

from osiris_contracts.messages import TradeProposal

_enc = msgspec.json.Encoder()


@dataclass(frozen=True)
class Example:
    """One correction: the user text phi3 answered, the corrected proposal (chosen) and what
    phi3 had proposed (rejected; None when the store lacks it), with the few-shot corrections
    phi3 would prepend to that text (`with_few_shot`)."""

    id: str
    prompt: str
    chosen: str
    rejected: str | None
    shots: tuple[str, ...] = ()

    def user_text(self, shots: int | None = None) -> str:
        """The user turn phi3 sends: the prompt after its few-shot corrections (the first
        `shots` of them; all when None)."""
        return user_prompt(self.prompt, self.shots if shots is None else self.shots[:shots])


def _proposal(value: Any) -> TradeProposal | None:
    if value in (None, ""):
        return None
    raw = value.encode() if isinstance(value, str) else _enc.encode(value)
    try:
        return msgspec.json.decode(raw, type=TradeProposal)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def build_examples(feedback: list[dict[str, Any]],
                   proposals: list[dict[str, Any]]) -> tuple[list[Example], dict[str, int]]:
    """Join corrections with the proposals they correct (by transaction_id).

    Returns the examples (newest correction per transaction wins) and counts of what was
    skipped and why: a correction whose proposal is unknown has no prompt to train on, and
    one whose corrected proposal does not validate is not a target worth learning.
    """
    by_tid = {p.get("transaction_id") or p.get("id"): p for p in proposals}
    skipped = {"no_prompt": 0, "invalid_correction": 0, "duplicate": 0}
    seen: set[str] = set()
    out: list[Example] = []
    for row in sorted(feedback, key=lambda r: str(r.get("timestamp") or ""), reverse=True):
        tid = str(row.get("transaction_id") or "")
        corrected = _proposal(row.get("corrected_proposal"))
        if corrected is None:
            skipped["invalid_correction"] += 1
            continue
        if tid in seen:
            skipped["duplicate"] += 1
            continue
        prop = by_tid.get(tid)
        if not prop or not prop.get("prompt"):
            skipped["no_prompt"] += 1
            continue
        seen.add(tid)
        original = _proposal(prop.get("phi3_proposal"))
        chosen = _enc.encode(corrected).decode()
        rejected = _enc.encode(original).decode() if original is not None else None
        out.append(Example(id=str(row.get("id") or tid), prompt=str(prop["prompt"]),
                           chosen=chosen, rejected=rejected if rejected != chosen else None))
    return out, skipped


def with_few_shot(examples: list[Example], n: int,
                  pool: list[Example] | None = None) -> list[Example]:
    """Each example with the few-shot corrections phi3 would prepend: up to `n` of the newest
    *other* corrections of `pool` (default: `examples`; newest first, as `build_examples`
    returns them). Held-out examples take theirs from the training pool only, so nothing
    they are scored on leaks into their prompt."""
    if n <= 0:
        return examples
    src = examples if pool is None else pool
    return [replace(e, shots=tuple(x.chosen for x in src if x.id != e.id)[:n]) for e in examples]


def bucket(id_: str) -> float:
    """Where an example id falls in [0, 1]: `split` holds out those below `eval_fraction`."""
    return int(hashlib.sha1(id_.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split(examples: list[Example], eval_fraction: float) -> tuple[list[Example], list[Example]]:
    """Hold out about `eval_fraction` of the examples, chosen by a hash of their id (stable:
    an example stays on its side as new ones arrive), at least one on each side."""
    held = [e for e in examples if bucket(e.id) < eval_fraction]
    train = [e for e in examples if bucket(e.id) >= eval_fraction]
    if not held and len(train) > 1:
        held, train = [train[-1]], train[:-1]
    if not train and len(held) > 1:
        train, held = held[:-1], [held[-1]]
    return train, held

"""How good a model is at the corrections it has not trained on: it answers each held-out
prompt (greedy, unguided, as phi3's prompt reads), and we score what it wrote.

- **valid**: the share of replies that hold one proposal validating against the schema
  (unguided, so the number says whether the model learnt the format itself);
- **agreement**: field-level agreement with the correction — ticker, action and side equal,
  stop and target within a tolerance — averaged over the five fields and the prompts (an
  invalid reply agrees on nothing);
- **loglik**: the mean per-token log-likelihood of the corrected proposal after the prompt;
- **pref_acc**: how often the correction is likelier (per token) than the original proposal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
from osiris_phi3.prompt import ChatFormat, chat_prompt
from osiris_phi3.schema import validate

from osiris_core.contracts import TradeProposal

from .dataset import Example

FIELDS = ("ticker", "action", "side", "new_stop_pct", "new_target_pct")


@dataclass(frozen=True)
class Scoring:
    """How replies are produced and compared."""

    system: str
    chat_format: ChatFormat
    max_new_tokens: int = 96
    repetition_penalty: float = 1.1
    stop_tolerance: float = 0.25
    target_tolerance: float = 0.5
    max_length: int = 1024
    batch_size: int = 8


@dataclass(frozen=True)
class EvalRow:
    """One configuration's scores over the held-out prompts."""

    valid: float
    agreement: float
    loglik: float
    n: int
    pref_acc: float | None = None

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items() if v is not None}


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


def field_agreement(got: TradeProposal | None, want: TradeProposal, *,
                    stop_tolerance: float = 0.25, target_tolerance: float = 0.5) -> float:
    """Share of `FIELDS` on which `got` agrees with `want` (0 for no proposal); stop and
    target agree within their tolerances (percentage points)."""
    if got is None:
        return 0.0
    hits = [got.ticker == want.ticker, got.action == want.action,
            got.side.upper() == want.side.upper(),
            abs(got.new_stop_pct - want.new_stop_pct) <= stop_tolerance,
            abs(got.new_target_pct - want.new_target_pct) <= target_tolerance]
    return sum(hits) / len(hits)


def _prompt(e: Example, shots: int, s: Scoring) -> str:
    return chat_prompt(s.system, e.user_text(shots), s.chat_format)


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


def score(model: Any, tok: Any, held: list[Example], s: Scoring, *, shots: int,
          replies: Callable[[list[str]], None] | None = None) -> EvalRow:
    """Score `model` as it is (adapter on or off) on `held`, each prompt with its first
    `shots` few-shot corrections."""
    model.eval()
    prompts = [_prompt(e, shots, s) for e in held]
    texts = generate(model, tok, prompts, s)
    if replies is not None:
        replies(texts)
    wants = [msgspec.json.decode(e.chosen, type=TradeProposal) for e in held]
    got = [parse_reply(t) for t in texts]
    agree = [field_agreement(g, w, stop_tolerance=s.stop_tolerance,
                             target_tolerance=s.target_tolerance)
             for g, w in zip(got, wants, strict=True)]
    ll, n_tok, wins, pairs = 0.0, 0, 0, 0
    for e, p in zip(held, prompts, strict=True):
        lp, n = logprob(model, tok, p, e.chosen, s.max_length)
        ll += lp
        n_tok += n
        if e.rejected is not None:
            lr, m = logprob(model, tok, p, e.rejected, s.max_length)
            pairs += 1
            wins += int(lp / max(n, 1) > lr / max(m, 1))
    k = max(len(held), 1)
    return EvalRow(valid=sum(g is not None for g in got) / k, agreement=sum(agree) / k,
                   loglik=ll / max(n_tok, 1), n=len(held),
                   pref_acc=wins / pairs if pairs else None)


ROWS = {"base": "base model", "few_shot": "few-shot alone", "adapter": "adapter alone",
        "adapter_few_shot": "adapter + few-shot", "in_service": "in service"}


def report_table(report: dict[str, dict[str, float]]) -> str:
    """The report as a text table (what `osiris train --now` and the bench print)."""
    lines = [f"  {'configuration':<20} {'valid':>6} {'agree':>6} {'loglik':>8}"]
    for key, label in ROWS.items():
        r = report.get(key)
        if r is not None:
            lines.append(f"  {label:<20} {r['valid']:>6.0%} {r['agreement']:>6.0%} "
                         f"{r['loglik']:>8.3f}")
    return "\n".join(lines)

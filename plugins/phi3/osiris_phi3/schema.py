"""The proposal schema: JSON Schema for GenAI's guidance, and the msgspec check after it.

Bounds on every number, lengths on every string and no free whitespace: a weak model then
cannot loop on digits or spaces until max_length (shared FINDINGS.md). The guidance can be
tighter than the contract (`proposal_schema`'s arguments come from `[plugins.phi3]`): a reply
that follows it always validates."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

import msgspec

from osiris_contracts.messages import TradeProposal

ACTIONS = ("adjust", "hold", "open", "close", "reduce", "increase")
SIDES = ("LONG", "SHORT")
TICKER_PATTERN = "^[A-Z][A-Z0-9.]{0,7}$"
MAX_STOP_PCT, MAX_TARGET_PCT, MAX_RATIONALE = 100.0, 1000.0, 160


NOT_TICKERS = frozenset(
    "AI AM API CEO CFO CPI ETF EPS EU EUR FOMC GDP IPO JSON LONG NATS OK PDF PM PE SHORT UK US "
    "USA USD UTC YOY".split())
"""Upper-case words that prompts use and that are not symbols."""
_WORD = re.compile(r"(?<![A-Za-z0-9.$])\$?([A-Z][A-Z0-9]{1,5}(?:\.[A-Z])?)(?![A-Za-z0-9])")


def named_tickers(text: str, limit: int = 16) -> list[str]:
    """Symbols a prompt names, in order of first mention: upper-case words of 2–6 letters
    or digits (optionally `$`-prefixed or with a class suffix such as `BRK.B`), without the
    common abbreviations in `NOT_TICKERS`."""
    out: list[str] = []
    for m in _WORD.finditer(text):
        sym = m.group(1)
        if sym not in NOT_TICKERS and not sym.isdigit() and sym not in out:
            out.append(sym)
            if len(out) >= limit:
                break
    return out


def proposal_schema(*, max_stop_pct: float = MAX_STOP_PCT, max_target_pct: float = MAX_TARGET_PCT,
                    rationale_max_chars: int = MAX_RATIONALE,
                    tickers: list[str] | None = None) -> dict[str, object]:
    """The guidance schema; the defaults are the contract's own bounds. `tickers` (from
    `named_tickers`) narrows `ticker` to those symbols."""
    ticker: dict[str, object] = {"type": "string", "pattern": TICKER_PATTERN}
    if tickers:
        ticker = {"type": "string", "enum": list(tickers)}
    return {
        "type": "object",
        "properties": {
            "ticker": ticker,
            "action": {"type": "string", "enum": list(ACTIONS)},
            "side": {"type": "string", "enum": list(SIDES)},
            "new_stop_pct": {"type": "number", "minimum": 0, "maximum": min(max_stop_pct, MAX_STOP_PCT)},
            "new_target_pct": {"type": "number", "minimum": 0,
                               "maximum": min(max_target_pct, MAX_TARGET_PCT)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            # printable ASCII: no control characters, and a small model drifting into
            # another script ("Quién tenga …") is steered back to plain English
            "rationale": {"type": "string", "minLength": 1,
                          "maxLength": min(rationale_max_chars, MAX_RATIONALE),
                          "pattern": "^[ -~]*$"},
        },
        "required": ["ticker", "action", "side", "new_stop_pct", "new_target_pct", "confidence",
                     "rationale"],
        "additionalProperties": False,
        "x-guidance": {"whitespace_flexible": False},
    }


PROPOSAL_SCHEMA = proposal_schema()
SCHEMA_JSON = json.dumps(PROPOSAL_SCHEMA)


class _Checked(msgspec.Struct, forbid_unknown_fields=True):
    ticker: Annotated[str, msgspec.Meta(pattern=TICKER_PATTERN)]
    action: Literal["adjust", "hold", "open", "close", "reduce", "increase"]
    side: Literal["LONG", "SHORT"]
    new_stop_pct: Annotated[float, msgspec.Meta(ge=0, le=MAX_STOP_PCT)]
    new_target_pct: Annotated[float, msgspec.Meta(ge=0, le=MAX_TARGET_PCT)]
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)]
    rationale: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_RATIONALE)]


def validate(text: str) -> TradeProposal:
    """Parse and check a reply; raises msgspec.ValidationError / DecodeError naming the field."""
    c = msgspec.json.decode(text.encode(), type=_Checked)
    return TradeProposal(**msgspec.structs.asdict(c))

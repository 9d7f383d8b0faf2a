"""The proposal schema: JSON Schema for GenAI's guidance, and the msgspec check after it.

Bounds on every number, lengths on every string and no free whitespace: a weak model then
cannot loop on digits or spaces until max_length (shared FINDINGS.md)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import msgspec

from osiris_core.contracts import TradeProposal

ACTIONS = ("adjust", "hold", "open", "close", "reduce", "increase")
SIDES = ("LONG", "SHORT")

PROPOSAL_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "ticker": {"type": "string", "pattern": "^[A-Z][A-Z0-9.]{0,7}$"},
        "action": {"type": "string", "enum": list(ACTIONS)},
        "side": {"type": "string", "enum": list(SIDES)},
        "new_stop_pct": {"type": "number", "minimum": 0, "maximum": 100},
        "new_target_pct": {"type": "number", "minimum": 0, "maximum": 1000},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string", "minLength": 1, "maxLength": 160,
                      "pattern": "^[^\\x00-\\x1f]*$"},
    },
    "required": ["ticker", "action", "side", "new_stop_pct", "new_target_pct", "confidence",
                 "rationale"],
    "additionalProperties": False,
    "x-guidance": {"whitespace_flexible": False},
}
SCHEMA_JSON = json.dumps(PROPOSAL_SCHEMA)


class _Checked(msgspec.Struct, forbid_unknown_fields=True):
    ticker: Annotated[str, msgspec.Meta(pattern="^[A-Z][A-Z0-9.]{0,7}$")]
    action: Literal["adjust", "hold", "open", "close", "reduce", "increase"]
    side: Literal["LONG", "SHORT"]
    new_stop_pct: Annotated[float, msgspec.Meta(ge=0, le=100)]
    new_target_pct: Annotated[float, msgspec.Meta(ge=0, le=1000)]
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)]
    rationale: Annotated[str, msgspec.Meta(min_length=1, max_length=160)]


def validate(text: str) -> TradeProposal:
    """Parse and check a reply; raises msgspec.ValidationError / DecodeError naming the field."""
    c = msgspec.json.decode(text.encode(), type=_Checked)
    return TradeProposal(**msgspec.structs.asdict(c))

"""The house-policy evaluation set: 40 market situations, each with the correction a desk
that follows one consistent rule would send, 30 to train on and 10 held out.

The rule (`house_proposal`) maps the window's move to action, side, stop and target:

    return ≥ +2 %        open      LONG   stop 2.0  target 6.0   (breakout: ride it)
    +0.5 % … +2 %        increase  LONG   stop 1.5  target 3.0
    −0.5 % … +0.5 %      hold      LONG   stop 1.0  target 2.0   (no edge: keep it tight)
    −2 % … −0.5 %        reduce    SHORT  stop 1.5  target 3.0
    return ≤ −2 %        open      SHORT  stop 2.0  target 6.0

Prompts are what the orchestrator sends phi3 for a window of bars (its query and market
summary). The set is committed (`data/house_policy.jsonl`) and `make_rows()` regenerates it
byte for byte; ids are chosen so that the trainer's own stable split (`dataset.split` at
`EVAL_FRACTION`) holds out exactly the 10 rows marked `eval`, whichever path they come by.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from osiris_core.contracts import TradeProposal

from .config import TrainerConfig
from .dataset import Example, bucket

EVAL_FRACTION = TrainerConfig().eval_fraction
"""The trainer's default split: the set is laid out for it."""
SEED = 20261202
DATA = "data/house_policy.jsonl"
TRAIN_TICKERS = ["AAPL", "MSFT", "AMZN", "TSLA", "GOOG", "META", "NFLX", "AMD", "INTC", "ORCL",
                 "CRM", "ADBE", "PYPL", "UBER", "SHOP"]
EVAL_TICKERS = ["NVDA", "COIN", "PLTR", "SNOW", "DIS"]
"""Held-out situations name tickers the adapter never trained on."""
BANDS = [(2.0, 4.5), (0.5, 2.0), (-0.5, 0.5), (-2.0, -0.5), (-4.5, -2.0)]


def house_proposal(ticker: str, return_pct: float) -> TradeProposal:
    """What the house sends for a window that moved `return_pct` percent."""
    r = return_pct
    if r >= 2.0:
        action, side, stop, target, why = "open", "LONG", 2.0, 6.0, "Strong breakout; ride it"
    elif r >= 0.5:
        action, side, stop, target, why = "increase", "LONG", 1.5, 3.0, "Steady gains; add"
    elif r > -0.5:
        action, side, stop, target, why = "hold", "LONG", 1.0, 2.0, "No clear move; hold tight"
    elif r > -2.0:
        action, side, stop, target, why = "reduce", "SHORT", 1.5, 3.0, "Drifting lower; lean short"
    else:
        action, side, stop, target, why = "open", "SHORT", 2.0, 6.0, "Breakdown; go short"
    return TradeProposal(ticker=ticker, action=action, side=side, new_stop_pct=stop,
                         new_target_pct=target, confidence=0.7,
                         rationale=f"{why} after a {r:+.1f}% move.")


def _market(ticker: str, r: float, i: int, rng: random.Random) -> dict[str, Any]:
    open_ = round(rng.uniform(20, 600), 2)
    close = round(open_ * (1 + r / 100), 2)
    hi = round(max(open_, close) * (1 + rng.uniform(0.001, 0.008)), 2)
    lo = round(min(open_, close) * (1 - rng.uniform(0.001, 0.008)), 2)
    day = f"2024-{1 + i % 12:02d}-{1 + i % 27:02d}"
    return {"ticks": 10, "symbol": ticker, "from": f"{day}T14:30:00+00:00",
            "to": f"{day}T23:30:00+00:00", "open": open_, "close": close, "high": hi, "low": lo,
            "volume": rng.randint(200_000, 5_000_000),
            "return_pct": round(100 * (close / open_ - 1), 4),
            "volatility_pct": round(rng.uniform(0.2, 0.9), 4)}


def _id(i: int, held: bool) -> str:
    """`house-NN-k` with the first k that lands on the wanted side of `dataset.split`."""
    k = 0
    while (bucket(f"house-{i:02d}-{k}") < EVAL_FRACTION) != held:
        k += 1
    return f"house-{i:02d}-{k}"


def make_rows() -> list[dict[str, Any]]:
    """The 40 rows, deterministically: 30 training situations (15 tickers × 2), then 10
    held out (5 unseen tickers × 2), every band represented on both sides."""
    from osiris_orchestrator.config import DEFAULT_QUERY
    from osiris_orchestrator.workflow import proposal_prompt

    rng = random.Random(SEED)
    plan = [(t, False) for t in TRAIN_TICKERS * 2] + [(t, True) for t in EVAL_TICKERS * 2]
    rows = []
    for i, (ticker, held) in enumerate(plan):
        lo, hi = BANDS[i % len(BANDS)]
        r = round(rng.uniform(lo + 0.05, hi - 0.05), 2)
        market = _market(ticker, r, i, rng)
        rows.append({
            "id": _id(i, held), "split": "eval" if held else "train",
            "prompt": proposal_prompt(DEFAULT_QUERY, market),
            # the rule reads the return as the prompt shows it (two decimals)
            "correction": _as_dict(house_proposal(ticker, round(market["return_pct"], 2))),
        })
    return rows


def _as_dict(p: TradeProposal) -> dict[str, Any]:
    import msgspec

    return dict(msgspec.to_builtins(p))


def dumps(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def load_rows(path: Path | None = None) -> list[dict[str, Any]]:
    """The committed set (or `path`)."""
    text = path.read_text() if path else files("osiris_trainer").joinpath(DATA).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class HouseSet:
    train: list[Example]
    held: list[Example]


def examples(rows: list[dict[str, Any]] | None = None,
             originals: dict[str, str] | None = None) -> HouseSet:
    """The set as training examples (newest first, as the store returns them); `originals`
    maps an id to what phi3 proposed before (the DPO rejected side)."""
    import msgspec

    rows = load_rows() if rows is None else rows
    originals = originals or {}
    out = [Example(id=r["id"], prompt=r["prompt"],
                   chosen=msgspec.json.encode(
                       msgspec.convert(r["correction"], TradeProposal)).decode(),
                   rejected=originals.get(r["id"])) for r in reversed(rows)]
    held = {r["id"] for r in rows if r["split"] == "eval"}
    return HouseSet([e for e in out if e.id not in held], [e for e in out if e.id in held])


if __name__ == "__main__":  # regenerate the committed file
    target = Path(__file__).parent / DATA
    target.parent.mkdir(exist_ok=True)
    target.write_text(dumps(make_rows()))
    print(f"wrote {target}")

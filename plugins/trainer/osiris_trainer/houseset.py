"""The house-policy evaluation sets: market situations, each with the correction a desk that
follows one consistent rule would send, some to train on and the rest held out.

Two rules (`POLICIES`) map the window's return and volatility (as the prompt shows them) to
action, side, stop and target. `momentum` follows the move:

    return ≥ +2 %        open      LONG   stop 2.0  target 6.0   (breakout: ride it)
    +0.5 % … +2 %        increase  LONG   stop 1.5  target 3.0
    −0.5 % … +0.5 %      hold      LONG   stop 1.0  target 2.0   (no edge: keep it tight)
    −2 % … −0.5 %        reduce    SHORT  stop 1.5  target 3.0
    return ≤ −2 %        open      SHORT  stop 2.0  target 6.0

`meanrev` fades extremes and lets volatility decide in between:

    return ≥ +3 %                       open    SHORT             stop 2.5  target 4.0
    return ≤ −3 %                       open    LONG              stop 2.5  target 4.0
    in between, volatility ≥ 0.6 %/bar  reduce  LONG if r ≥ 0 else SHORT  stop 3.0  target 2.0
    in between, volatility < 0.6 %/bar  hold    LONG if r ≥ 0 else SHORT  stop 1.0  target 1.5

Each policy's set (`data/house_<name>.jsonl`, `make_rows(name)`) has 320 training situations
(`TRAIN_TICKERS`, dates in 2024) and 200 held out (`EVAL_TICKERS`, dates in 2025), dealt
round-robin over the rule's regions so any prefix of either side is balanced (the learning
curve trains on the first n). The legacy set (`data/house_policy.jsonl`, `make_rows()`): 40
momentum situations, 30 to train on and 10 held out, which the real-model test and
`learning.py` use. Prompts are what the orchestrator sends phi3 for a window of bars (its
query and market summary). The files are committed and `python -m osiris_trainer.houseset`
regenerates them byte for byte; ids are chosen so that the trainer's own stable split
(`dataset.split` at `EVAL_FRACTION`) holds out exactly the rows marked `eval`, whichever path
they come by.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

from osiris_contracts.messages import TradeProposal

from .config import TrainerConfig
from .dataset import Example, bucket

EVAL_FRACTION = TrainerConfig().eval_fraction
"""The trainer's default split: the sets are laid out for it."""
SEED = 20261202
DATA = "data/house_policy.jsonl"
TRAIN_TICKERS = ["AAPL", "MSFT", "AMZN", "TSLA", "GOOG", "META", "NFLX", "AMD", "INTC", "ORCL",
                 "CRM", "ADBE", "PYPL", "UBER", "SHOP"]
EVAL_TICKERS = ["NVDA", "COIN", "PLTR", "SNOW", "DIS"]
"""Held-out situations name tickers the adapter never trained on."""
BANDS = [(2.0, 4.5), (0.5, 2.0), (-0.5, 0.5), (-2.0, -0.5), (-4.5, -2.0)]
N_TRAIN, N_HELD = 320, 200
"""A policy set's training pool and held-out situations."""
MARGIN = 0.05
"""How far sampled values stay from a region's edges, so the prompt's rounding (two
decimals, and the close rounded to the cent) never moves a situation across a threshold."""
VOLATILITY = (0.2, 0.9)
"""The range of volatility (% per bar) of every situation."""


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


def momentum(ticker: str, return_pct: float, volatility_pct: float) -> TradeProposal:
    """The momentum house (`house_proposal`): it reads the move only, not the volatility."""
    return house_proposal(ticker, return_pct)


def meanrev(ticker: str, return_pct: float, volatility_pct: float) -> TradeProposal:
    """The mean-reversion house: it fades a move of 3 % or more; below that, volatility
    decides whether to cut size or sit tight (on the side of the move)."""
    r, v = return_pct, volatility_pct
    with_move = "LONG" if r >= 0 else "SHORT"
    if r >= 3.0:
        action, side, stop, target, why = "open", "SHORT", 2.5, 4.0, "Stretched; fade the spike"
    elif r <= -3.0:
        action, side, stop, target, why = "open", "LONG", 2.5, 4.0, "Washed out; fade the drop"
    elif v >= 0.6:
        action, side, stop, target, why = "reduce", with_move, 3.0, 2.0, "Choppy; cut size"
    else:
        action, side, stop, target, why = "hold", with_move, 1.0, 1.5, "Calm; sit tight"
    return TradeProposal(ticker=ticker, action=action, side=side, new_stop_pct=stop,
                         new_target_pct=target, confidence=0.7,
                         rationale=f"{why} after a {r:+.1f}% move at {v:.2f}% volatility.")


Rule = Callable[[str, float, float], TradeProposal]
"""(ticker, return %, volatility % per bar) → the house's proposal."""


@dataclass(frozen=True)
class Region:
    """One cell of a rule (one decision): the return and volatility ranges it samples."""

    name: str
    ret: tuple[float, float]
    vol: tuple[float, float] = VOLATILITY

    def sample(self, rng: random.Random) -> tuple[float, float]:
        """A (return, volatility) pair inside the cell, at the prompt's two decimals."""
        return (round(rng.uniform(self.ret[0] + MARGIN, self.ret[1] - MARGIN), 2),
                round(rng.uniform(self.vol[0] + MARGIN, self.vol[1] - MARGIN), 2))


@dataclass(frozen=True)
class Policy:
    """A house rule and its regions: situations are dealt evenly over the regions."""

    name: str
    rule: Rule
    regions: tuple[Region, ...]

    @property
    def data(self) -> str:
        return f"data/house_{self.name}.jsonl"


POLICIES: dict[str, Policy] = {p.name: p for p in (
    Policy("momentum", momentum, (
        Region("breakout", (2.0, 4.5)), Region("gain", (0.5, 2.0)), Region("flat", (-0.5, 0.5)),
        Region("drift", (-2.0, -0.5)), Region("breakdown", (-4.5, -2.0)))),
    Policy("meanrev", meanrev, (
        Region("spike", (3.0, 4.5)), Region("drop", (-4.5, -3.0)),
        Region("choppy_up", (0.0, 3.0), (0.6, 0.9)), Region("choppy_down", (-3.0, 0.0), (0.6, 0.9)),
        Region("calm_up", (0.0, 3.0), (0.2, 0.6)), Region("calm_down", (-3.0, 0.0), (0.2, 0.6)))),
)}


def _market(ticker: str, r: float, day: str, rng: random.Random,
            vol: float | None = None) -> dict[str, Any]:
    """A window of bars that moved `r` percent (volatility drawn when `vol` is None)."""
    open_ = round(rng.uniform(20, 600), 2)
    close = round(open_ * (1 + r / 100), 2)
    hi = round(max(open_, close) * (1 + rng.uniform(0.001, 0.008)), 2)
    lo = round(min(open_, close) * (1 - rng.uniform(0.001, 0.008)), 2)
    return {"ticks": 10, "symbol": ticker, "from": f"{day}T14:30:00+00:00",
            "to": f"{day}T23:30:00+00:00", "open": open_, "close": close, "high": hi, "low": lo,
            "volume": rng.randint(200_000, 5_000_000),
            "return_pct": round(100 * (close / open_ - 1), 4),
            "volatility_pct": round(rng.uniform(0.2, 0.9), 4) if vol is None else vol}


def _id(stem: str, held: bool) -> str:
    """`<stem>-k` with the first k that lands on the wanted side of `dataset.split`."""
    k = 0
    while (bucket(f"{stem}-{k}") < EVAL_FRACTION) != held:
        k += 1
    return f"{stem}-{k}"


def _prompt(market: dict[str, Any]) -> str:
    from osiris_orchestrator.config import DEFAULT_QUERY
    from osiris_orchestrator.workflow import proposal_prompt

    return str(proposal_prompt(DEFAULT_QUERY, market))


def make_rows(policy: str | None = None) -> list[dict[str, Any]]:
    """A policy's set (`POLICIES`), or with no policy the legacy 40 rows, deterministically."""
    return _legacy_rows() if policy is None else _policy_rows(POLICIES[policy])


def _legacy_rows() -> list[dict[str, Any]]:
    """30 momentum training situations (15 tickers × 2), then 10 held out (5 unseen tickers
    × 2), every band represented on both sides."""
    rng = random.Random(SEED)
    plan = [(t, False) for t in TRAIN_TICKERS * 2] + [(t, True) for t in EVAL_TICKERS * 2]
    rows: list[dict[str, Any]] = []
    for i, (ticker, held) in enumerate(plan):
        lo, hi = BANDS[i % len(BANDS)]
        r = round(rng.uniform(lo + MARGIN, hi - MARGIN), 2)
        market = _market(ticker, r, f"2024-{1 + i % 12:02d}-{1 + i % 27:02d}", rng)
        rows.append({
            "id": _id(f"house-{i:02d}", held), "split": "eval" if held else "train",
            "prompt": _prompt(market),
            # the rule reads the return as the prompt shows it (two decimals)
            "correction": _as_dict(house_proposal(ticker, round(market["return_pct"], 2))),
        })
    return rows


def _policy_rows(p: Policy) -> list[dict[str, Any]]:
    """`N_TRAIN` training rows then `N_HELD` held out, each side dealt round-robin over the
    regions (row j of a side is in region j mod regions) with every region cycling through
    the side's tickers, so neither a prefix nor a ticker leans to one decision."""
    rng = random.Random(f"{SEED}-{p.name}")
    n_reg = len(p.regions)
    rows: list[dict[str, Any]] = []
    for held, n, tickers, year in ((False, N_TRAIN, TRAIN_TICKERS, 2024),
                                   (True, N_HELD, EVAL_TICKERS, 2025)):
        step = max(1, len(tickers) // n_reg)  # regions of one round name different tickers
        for j in range(n):
            k, round_ = j % n_reg, j // n_reg
            ticker = tickers[(round_ + k * step) % len(tickers)]
            r, vol = p.regions[k].sample(rng)
            day = (date(year, 1, 1) + timedelta(days=rng.randrange(365))).isoformat()
            market = _market(ticker, r, day, rng, vol)
            rows.append({
                "id": _id(f"house-{p.name}-{len(rows):03d}", held),
                "split": "eval" if held else "train", "region": p.regions[k].name,
                "prompt": _prompt(market),
                # the rule reads what the prompt shows (two decimals)
                "correction": _as_dict(p.rule(ticker, round(market["return_pct"], 2), vol)),
            })
    return rows


def _as_dict(p: TradeProposal) -> dict[str, Any]:
    import msgspec

    return dict(msgspec.to_builtins(p))


def dumps(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def load_rows(path: Path | None = None, *, policy: str | None = None) -> list[dict[str, Any]]:
    """The committed set: `path`, else the policy's (`POLICIES`), else the legacy 40 rows."""
    if path is not None:
        text = path.read_text()
    else:
        data = DATA if policy is None else POLICIES[policy].data
        text = files("osiris_trainer").joinpath(data).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def subset(rows: list[dict[str, Any]], n_train: int,
           n_held: int | None = None) -> list[dict[str, Any]]:
    """The first `n_train` training rows and the first `n_held` held-out rows (all when None),
    in the set's order: a policy set's prefixes are balanced over its regions. Asking for more
    than there are is an error, so a learning curve never silently flattens."""
    train = [r for r in rows if r["split"] == "train"]
    held = [r for r in rows if r["split"] == "eval"]
    n_held = len(held) if n_held is None else n_held
    if not (0 <= n_train <= len(train) and 0 <= n_held <= len(held)):
        raise ValueError(f"asked {n_train} train / {n_held} held out of "
                         f"{len(train)} / {len(held)}")
    return train[:n_train] + held[:n_held]


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


if __name__ == "__main__":  # regenerate the committed files
    here = Path(__file__).parent
    for name, data in [(None, DATA)] + [(p.name, p.data) for p in POLICIES.values()]:
        target = here / data
        target.parent.mkdir(exist_ok=True)
        target.write_text(dumps(make_rows(name)))
        print(f"wrote {target}")

"""The proofable reward: a deterministic score of a policy's decisions on a held-out market
window, and the paired bootstrap that decides whether a variant really beats another.

Pinned: this file, the ledger, the policy loader and the sandbox harness are hash-checked
against `PINNED.json` before every evaluation (`check_pins`), and the market data against
the hash recorded when it was first used. Everything here is pure and runs in a fixed order:
the same decisions give the same reward, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
from osiris_orchestrator.config import RiskConfig
from osiris_orchestrator.ledger import open_trade, walk
from osiris_orchestrator.limits import risk_gate

from osiris_contracts.messages import MarketTick, TradeProposal

__all__ = ["PINNED_FILES", "Scored", "Windows", "bootstrap_lower", "check_pins", "make_windows",
           "pin_digest", "score_decisions"]

PINNED_FILES = {
    "osiris_dgm/reward.py": ("osiris_dgm", "reward.py"),
    "osiris_dgm/harness.py": ("osiris_dgm", "harness.py"),
    "osiris_dgm/canaries.py": ("osiris_dgm", "canaries.py"),
    "osiris_orchestrator/ledger.py": ("osiris_orchestrator", "ledger.py"),
    "osiris_orchestrator/policy.py": ("osiris_orchestrator", "policy.py"),
    "osiris_orchestrator/limits.py": ("osiris_orchestrator", "limits.py"),
}


def _file_sha(package: str, name: str) -> str:
    return hashlib.sha256(resources.files(package).joinpath(name).read_bytes()).hexdigest()


def pin_digest() -> dict[str, str]:
    """sha256 of every pinned file as installed now."""
    return {key: _file_sha(pkg, name) for key, (pkg, name) in PINNED_FILES.items()}


def check_pins() -> None:
    """Raise RuntimeError naming each reward file that differs from PINNED.json."""
    pinned = json.loads(resources.files("osiris_dgm").joinpath("PINNED.json").read_text())
    now = pin_digest()
    bad = [k for k in PINNED_FILES if pinned.get(k) != now[k]]
    if bad:
        raise RuntimeError(f"reward code changed since it was pinned: {', '.join(bad)} "
                           "(sha256 differs from osiris_dgm/PINNED.json): refusing to evaluate; after a "
                           "deliberate change run `python -m osiris_dgm.pins --write`")


def data_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Windows:
    """Decision points on the held-out part of the market: batch k is bars[ends[k]-every:ends[k]]."""

    bars: list[MarketTick]
    every: int
    ends: list[int]
    cheap: int
    """The first `cheap` decisions form the cheap window."""
    groups: list[list[int]]
    """Decision indices of each sub-window."""

    def batch(self, k: int) -> list[MarketTick]:
        return self.bars[self.ends[k] - self.every:self.ends[k]]


def make_windows(bars: list[MarketTick], every: int, holdout_fraction: float,
                 cheap_fraction: float, sub_windows: int) -> Windows:
    """Cut the held-out tail of `bars` into decision points and sub-windows."""
    every = max(1, every)
    start = int(len(bars) * (1.0 - holdout_fraction))
    ends = list(range(start + every, len(bars), every))
    if len(ends) < 2 * sub_windows:
        raise ValueError(f"the held-out window has {len(ends)} decision points: need at least "
                         f"{2 * sub_windows} ({sub_windows} sub-windows); use a longer CSV")
    size = len(ends) / sub_windows
    groups = [list(range(int(i * size), int((i + 1) * size))) for i in range(sub_windows)]
    cheap = max(sub_windows, int(len(ends) * cheap_fraction))
    return Windows(bars=bars, every=every, ends=ends, cheap=cheap, groups=groups)


@dataclass
class Scored:
    """A policy's reward on some decisions."""

    reward: float
    returns: list[float]
    trades: int
    violations: int
    sub_rewards: list[float] = field(default_factory=list)


def window_reward(returns: list[float], violations: int, drawdown_weight: float,
                  violation_penalty: float) -> float:
    """Σ returns − drawdown_weight · max drawdown − violation_penalty · violations (percent)."""
    equity = peak = drawdown = 0.0
    for r in returns:
        equity += r
        peak = max(peak, equity)
        drawdown = max(drawdown, peak - equity)
    return equity - drawdown_weight * drawdown - violation_penalty * violations


def decision_return(w: Windows, k: int, d: dict[str, Any], limits: RiskConfig,
                    horizon: int) -> float:
    """The return of decision k (0 when it opens nothing), under the operator's hard limits."""
    if not d.get("approved"):
        return 0.0
    proposal = msgspec.convert(d["proposal"], TradeProposal)
    size = d.get("size", 1.0)
    if (not isinstance(size, (int, float)) or not 0.0 <= size <= 1.0
            or not all(math.isfinite(x) for x in (proposal.new_stop_pct,
                                                  proposal.new_target_pct, proposal.confidence))):
        raise ValueError(f"decision {k}: invalid values from the sandbox")
    ok, _ = risk_gate(proposal, limits)
    if not ok:
        return 0.0
    entry = w.bars[w.ends[k] - 1].close
    trade = open_trade(proposal.side, entry, proposal.new_stop_pct, proposal.new_target_pct,
                       float(d.get("size", 1.0)), horizon)
    return float(walk(trade, w.bars[w.ends[k]:w.ends[k] + horizon]))


def score_decisions(w: Windows, decisions: dict[int, dict[str, Any]], limits: RiskConfig,
                    horizon: int, drawdown_weight: float, violation_penalty: float,
                    groups: list[list[int]] | None = None) -> Scored:
    """Reward of `decisions` (index → {approved, proposal, size} or {violation}); with
    `groups`, also each group's reward."""
    returns: dict[int, float] = {}
    bad: set[int] = set()
    for k in sorted(decisions):
        d = decisions[k]
        if d.get("violation"):
            bad.add(k)
            returns[k] = 0.0
            continue
        try:  # the sandbox's output is data from untrusted code: checked again here
            r = decision_return(w, k, d, limits, horizon)
        except (msgspec.ValidationError, ValueError, TypeError, KeyError):
            r = math.nan
        if not math.isfinite(r):
            bad.add(k)
            r = 0.0
        returns[k] = r
    order = sorted(returns)
    total = window_reward([returns[k] for k in order], len(bad), drawdown_weight,
                          violation_penalty)
    subs = [window_reward([returns[k] for k in g if k in returns],
                          sum(1 for k in g if k in bad), drawdown_weight, violation_penalty)
            for g in (groups or [])]
    return Scored(reward=total, returns=[returns[k] for k in order],
                  trades=sum(1 for k in order if returns[k] != 0.0), violations=len(bad),
                  sub_rewards=subs)


def bootstrap_lower(diffs: list[float], resamples: int, confidence: float,
                    seed: int = 0) -> tuple[float, float, float]:
    """(mean, lower, upper) of a seeded percentile bootstrap of the mean of paired `diffs`:
    `lower` is the one-sided `confidence` lower bound, `upper` the one-sided upper bound."""
    n = len(diffs)
    if n == 0:
        return 0.0, 0.0, 0.0
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = means[int((1.0 - confidence) * (resamples - 1))]
    hi = means[int(confidence * (resamples - 1))]
    return sum(diffs) / n, lo, hi

"""How sure a held-out score is, and what a model that learnt nothing would score.

Held-out sets are a few hundred rows at most, so a score comes with a percentile bootstrap
interval over rows (`bootstrap_ci`); two configurations scored on the same rows are compared
row by row (`paired_diff_ci`), which removes the rows' own difficulty from the noise. The
floor a learnt rule must clear is `best_constant`: the one proposal, fitted on the training
rows, that agrees best with them whatever the market did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Any

import numpy as np

from osiris_contracts.messages import TradeProposal

from .config import STOP_TOLERANCE, TARGET_TOLERANCE
from .evaluate import DECISION_FIELDS, Decided, field_hits, within


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval [lo, hi] (all nan when there were no rows)."""

    mean: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi}


def bootstrap_ci(scores: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> Interval:
    """The mean of `scores` and its percentile bootstrap interval (rows resampled with
    replacement, `n_boot` times); the same seed gives the same interval."""
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, mean, mean)
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    lo, hi = np.quantile(x[idx].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return Interval(mean, float(lo), float(hi))


def paired_diff_ci(a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000,
                   seed: int = 0, level: float = 0.95) -> Interval:
    """mean(a − b) over the same rows, resampling rows jointly (the same indices for both)."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same rows: {len(a)} != {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return bootstrap_ci(d.tolist(), n_boot=n_boot, seed=seed, level=level)


def _mode(values: list[str]) -> str:
    """The commonest value; ties go to the alphabetically first."""
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def _cover(values: list[float], tolerance: float) -> float:
    """The value within `tolerance` of the most `values`. Candidates are the observed values
    and the midpoints of pairs of them: any set of values one constant covers is covered by
    the midpoint of its extremes (e.g. stops 1.5 and 2.0 at ±0.25 both by 1.75). Ties go to an
    observed value, then the smallest."""
    seen = sorted(set(values))

    def covered(c: float) -> int:
        return sum(within(v, c, tolerance) for v in values)

    cands = {(a + b) / 2 for a, b in combinations_with_replacement(seen, 2)}
    return min(cands, key=lambda c: (-covered(c), c not in seen, c))


def best_constant(train_wants: list[TradeProposal], stop_tolerance: float = STOP_TOLERANCE,
                  target_tolerance: float = TARGET_TOLERANCE) -> TradeProposal:
    """The one proposal that agrees best on `DECISION_FIELDS` with the training corrections,
    fitted field by field (each field scores on its own): the commonest action and side, and
    the stop and target within tolerance of the most rows. Ticker, confidence and rationale
    are placeholders: they are not decision fields, and the ticker is grounded by the schema
    when served, so the constant's ticker never counts."""
    if not train_wants:
        raise ValueError("best_constant needs at least one training row")
    return TradeProposal(
        ticker="*", action=_mode([w.action for w in train_wants]),
        side=_mode([w.side.upper() for w in train_wants]),
        new_stop_pct=_cover([w.new_stop_pct for w in train_wants], stop_tolerance),
        new_target_pct=_cover([w.new_target_pct for w in train_wants], target_tolerance),
        confidence=0.5, rationale="the same proposal whatever the market did")


@dataclass(frozen=True)
class Scored:
    """One configuration's held-out replies: per row, whether it validated and which
    decision fields it got right."""

    valid: tuple[bool, ...]
    hits: tuple[dict[str, bool], ...]

    @classmethod
    def of(cls, got: Sequence[Decided | None], wants: Sequence[Decided], *,
           stop_tolerance: float = STOP_TOLERANCE, target_tolerance: float = TARGET_TOLERANCE) -> Scored:
        if len(got) != len(wants):
            raise ValueError(f"{len(got)} replies for {len(wants)} rows")
        return cls(tuple(g is not None for g in got),
                   tuple(field_hits(g, w, stop_tolerance=stop_tolerance,
                                    target_tolerance=target_tolerance)
                         for g, w in zip(got, wants, strict=True)))

    def scores(self) -> list[float]:
        """Per row, the share of decision fields right (what `paired_diff_ci` compares)."""
        return [sum(h.values()) / len(DECISION_FIELDS) for h in self.hits]

    def overall(self, *, n_boot: int = 2000, seed: int = 0) -> Interval:
        return bootstrap_ci(self.scores(), n_boot=n_boot, seed=seed)

    def per_field(self, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Interval]:
        return {f: bootstrap_ci([float(h[f]) for h in self.hits], n_boot=n_boot, seed=seed)
                for f in DECISION_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: {"n", "valid", "agreement": {mean, lo, hi}, "fields": {…}}."""
        n = len(self.hits)
        return {"n": n, "valid": sum(self.valid) / n if n else float("nan"),
                "agreement": self.overall().to_dict(),
                "fields": {f: i.to_dict() for f, i in self.per_field().items()}}

"""The `auto` planner's bandit: which planner (arm) pays, learned from each child's gain over
its parent, and chosen by an asymmetric UCB with ε-exploration.

Shaped after ShinkaEvolve's `AsymmetricUCB` (which picks an LLM per proposal), reduced to
what the kernel needs:

- **asymmetric reward**: the gain over the parent, clipped at 0. A child worse than its
  parent, and every failure (rejected, error, no-op), counts 0 — never negative, so a
  planner that proposes bold changes is not punished more than one that proposes nothing;
- **adaptive scale**: an arm's mean gain is divided by the best arm's mean gain, so the
  exploration bonus means the same whatever the reward's units are. Not by the largest
  single gain: on a real market the gains are sparse and heavy-tailed (one jump of 5 among
  steps of 0.3), and means divided by that jump sat far below the bonus, so the choice was
  nearly a round robin (an arm that never gained was chosen ~42 % of the time);
- **UCB1 bonus** `c · sqrt(2 ln t / n)`, every arm tried once first, and with probability ε
  a non-winning arm instead (so a planner that was unlucky early is tried again);
- **decay**: sums and counts are discounted per update, so the bandit follows a search whose
  easy gains run out (mutate's early wins do not buy it the whole run).

Its whole state is a few numbers (`state()` / `from_state`), kept in the kernel's
`state.json`: a restarted kernel continues the same bandit. Choices draw from an rng the
caller seeds (the kernel seeds it from its seed and the iteration), so a run replays.
"""

from __future__ import annotations

import math
import random
from typing import Any

__all__ = ["Bandit"]


class Bandit:
    """Asymmetric UCB over named arms; `choose(rng)` then `update(arm, gain)`."""

    def __init__(self, arms: list[str], exploration: float = 0.5, epsilon: float = 0.1,
                 decay: float = 0.98) -> None:
        if not arms or len(set(arms)) != len(arms):
            raise ValueError(f"the bandit needs distinct arms, got {arms!r}")
        if not 0.0 <= epsilon <= 1.0 or not 0.0 < decay <= 1.0 or exploration < 0.0:
            raise ValueError("bandit: need 0 ≤ epsilon ≤ 1, 0 < decay ≤ 1, exploration ≥ 0")
        self.arms = list(arms)
        self.exploration = exploration
        self.epsilon = epsilon
        self.decay = decay
        self.pulls = {a: 0 for a in arms}
        """Times each arm was chosen and rewarded (never decayed: what status shows)."""
        self.weight = {a: 0.0 for a in arms}
        self.total = {a: 0.0 for a in arms}
        """Decayed count and sum of clipped gains: the mean the choice uses."""
        self.max_gain = 0.0

    # --- choice -------------------------------------------------------------------------
    def mean(self, arm: str) -> float:
        return self.total[arm] / self.weight[arm] if self.weight[arm] > 0 else 0.0

    def scores(self) -> dict[str, float]:
        """Each tried arm's UCB score: scaled mean gain + exploration bonus."""
        t = sum(self.weight.values())
        best = max(self.mean(a) for a in self.arms)
        scale = best if best > 0 else 1.0
        return {a: self.mean(a) / scale
                + self.exploration * math.sqrt(2.0 * math.log(max(t, 1.0)) / self.weight[a])
                for a in self.arms if self.weight[a] > 0}

    def choose(self, rng: random.Random) -> str:
        untried = [a for a in self.arms if self.pulls[a] == 0]
        if untried:
            return rng.choice(untried)
        scores = self.scores()
        best = max(scores.values())
        # ties within float noise are ties: the choice must not hinge on the last bit
        winners = [a for a in self.arms if scores[a] >= best - 1e-12]
        others = [a for a in self.arms if a not in winners]
        if others and rng.random() < self.epsilon:
            return rng.choice(others)
        return rng.choice(winners)

    # --- learning -----------------------------------------------------------------------
    def update(self, arm: str, gain: float | None) -> float:
        """Reward `arm` with `gain` (a child's reward minus its parent's; None: a failure);
        returns the reward used (≥ 0)."""
        if arm not in self.pulls:
            raise KeyError(f"unknown arm {arm!r} (arms: {', '.join(self.arms)})")
        r = max(0.0, gain) if gain is not None and math.isfinite(gain) else 0.0
        for a in self.arms:
            self.weight[a] *= self.decay
            self.total[a] *= self.decay
        self.pulls[arm] += 1
        self.weight[arm] += 1.0
        self.total[arm] += r
        self.max_gain = max(self.max_gain, r)
        return r

    # --- persistence --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"arms": self.arms, "pulls": self.pulls, "weight": self.weight,
                "total": self.total, "max_gain": self.max_gain}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, arms: list[str], exploration: float = 0.5,
                   epsilon: float = 0.1, decay: float = 0.98) -> Bandit:
        """A bandit over `arms`, continuing `state` for the arms it knows (an arm added to
        the config since starts untried; one removed is dropped)."""
        b = cls(arms, exploration, epsilon, decay)
        if state:
            for a in arms:
                if a in state.get("pulls", {}):
                    b.pulls[a] = int(state["pulls"][a])
                    b.weight[a] = float(state["weight"][a])
                    b.total[a] = float(state["total"][a])
            b.max_gain = float(state.get("max_gain", 0.0))
        return b

    def summary(self) -> dict[str, dict[str, float]]:
        """Per arm: times chosen and its (decayed) mean gain — what `osiris dgm` shows."""
        return {a: {"pulls": self.pulls[a], "mean_gain": round(self.mean(a), 6)}
                for a in self.arms}

"""`[plugins.dgm]`: the self-improvement kernel's settings."""

from __future__ import annotations

import msgspec

from osiris_core import PluginConfig


class DgmConfig(PluginConfig, frozen=True, kw_only=True):
    planner: str = "mutate"
    """Planner used when a request names none: nop, null, mutate, llm, llm_diff, auto or a
    plugin's."""
    auto_arms: list[str] = msgspec.field(default_factory=lambda: ["mutate", "llm"])
    """The planners the `auto` planner chooses between (its bandit's arms)."""
    auto_exploration: float = 0.5
    """UCB exploration coefficient of the `auto` bandit (0: pure exploitation)."""
    auto_epsilon: float = 0.1
    """Probability that `auto` tries a planner other than the UCB winner."""
    auto_decay: float = 0.98
    """Discount of the bandit's counts and sums per iteration (1: never forget)."""
    llm_candidates: int = 3
    """Edits the `llm` planner samples at most per proposal (seeds seed, seed+1, …): the first
    whose source is not archived yet is proposed; if every one is, `mutate` is used instead."""
    llm_temperature: float = 0.8
    """Sampling temperature of the `llm` planner's edits (> 0: candidates differ by seed)."""
    serve_planners: bool = True
    """Serve `osiris.dgm.plan` with the installed planners (false when an external planner
    service, e.g. the seeds' AZR planner, answers on that subject instead)."""
    market_csv: str = ""
    """The market the reward replays; empty: data_dir/market/sim.csv, the sim's seeded
    synthetic series (written by `osiris demo`, or by the kernel when it is missing)."""
    holdout_fraction: float = 0.5
    """The last part of the CSV is the held-out window the reward is computed on."""
    cheap_fraction: float = 0.25
    """The first part of the held-out window scores every variant; only a variant at least as
    good as its parent there is scored on the whole window (the cascade)."""
    sub_windows: int = 8
    """The held-out window is cut into this many sub-windows for the paired bootstrap."""
    bootstrap: int = 2000
    confidence: float = 0.95
    """A variant wins only if the lower bound of this one-sided bootstrap interval of its mean
    sub-window advantage over its parent is above 0."""
    drawdown_weight: float = 0.5
    violation_penalty: float = 5.0
    """Reward = Σ returns % − drawdown_weight · max drawdown % − violation_penalty · violations."""
    allow: list[str] = msgspec.field(default_factory=lambda: ["policy.py"])
    """Files a patch may touch (the policy module); anything else is rejected."""
    max_diff_bytes: int = 65_536
    sandbox_cpu_s: int = 30
    sandbox_wall_s: float = 60.0
    sandbox_memory_mb: int = 1024
    lint: bool = True
    """Stage 1 (ruff + pylint score not below the parent's)."""
    shadow_decisions: int = 3
    """Live runs a winner spends in shadow before it is promoted (0: promote at once)."""
    monitor_min_pairs: int = 6
    monitor_max_pairs: int = 40
    """After promotion, live outcomes are paired with the replaced policy (kept in shadow);
    a significant loss rolls back, `monitor_max_pairs` without one keeps the variant (0: no
    live check — a promotion is final at once)."""
    monitor_interval_s: float = 1.0
    seed: int = 0
    planner_timeout_s: float = 180.0
    phi3_timeout_s: float = 120.0
    canary_every: int = 10
    """Replay the integrity canaries (known-bad variants that must be rejected: a NaN stop, a
    size above 1, patches of the reward file, the harness or the pins) before the first
    iteration and every this many after; one that passes stops the loop (0: never)."""
    canaries_file: str = ""
    """A JSON object {name: unified diff against the seed policy} of more canaries (they can
    only add to the pinned set, never replace it)."""
    schedule_every_s: float = 0.0
    """Run one iteration every this many seconds in the background (0: only on request)."""

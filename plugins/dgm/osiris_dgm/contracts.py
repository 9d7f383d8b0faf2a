"""The dgm plugin's subjects and messages (`osiris.dgm.plan` and `osiris.dgm.events` are
fixed contracts; `osiris.dgm.run` / `osiris.dgm.rollback` serve the `osiris dgm` CLI)."""

from __future__ import annotations

from typing import Any

import msgspec

from osiris_contracts.messages import DgmDecision as Decision
from osiris_contracts.messages import DgmEvent
from osiris_contracts.messages import DgmVariant as Variant
from osiris_contracts.subjects import DGM_EVENTS
from osiris_core.subjects import Subject

__all__ = ["DGM_EVENTS", "DGM_PLAN", "DGM_ROLLBACK", "DGM_RUN", "Decision", "DgmEvent", "PlanReply",
           "PlanRequest", "RollbackReply", "RollbackRequest", "RunReply", "RunRequest", "Variant"]


class PlanRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The AZR planner's request: what the live system did, the policy to change, by whom."""

    planner: str
    policy_source: str
    traces: dict[str, Any] = {}
    """A summary of recent performance: backtest scores of the parent, live outcomes, runs."""
    seed: int = 0
    """Deterministic planners draw from this seed."""
    path: str = "policy.py"
    """The name the diff's headers must use for the policy file."""


class PlanReply(msgspec.Struct, kw_only=True):
    """A unified diff against `policy_source`; empty means no change (a no-op iteration)."""

    diff: str
    planner: str
    note: str = ""
    why: str = ""
    """The planner's reason for the change in a few words (kept with the variant)."""


class RunRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    iterations: int = 1
    planner: str | None = None


class RunReply(msgspec.Struct, kw_only=True):
    iterations: list[Variant]
    best: str
    best_reward: float | None
    seed_reward: float | None
    live: str
    shadow: str | None = None
    message: str = ""


class RollbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    variant: str | None = None
    reason: str = "by hand (osiris dgm rollback)"


class RollbackReply(msgspec.Struct, kw_only=True):
    rolled_back_from: str
    live: str
    message: str


DGM_PLAN = Subject(
    "osiris.dgm.plan", "service", "dgm-planner", PlanRequest, PlanReply,
    description="traces + current policy + planner name → a unified diff (empty: no-op)",
)
DGM_RUN = Subject(
    "osiris.dgm.run", "service", "dgm", RunRequest, RunReply,
    description="run N self-improvement iterations now (osiris dgm)",
)
DGM_ROLLBACK = Subject(
    "osiris.dgm.rollback", "service", "dgm", RollbackRequest, RollbackReply,
    description="serve the previous (or a named) policy variant again (osiris dgm rollback)",
)

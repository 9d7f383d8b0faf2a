"""The orchestrator's control ops: its policy slots, read and changed by the dgm kernel and by
`osiris dgm rollback` over `osiris.orchestrator.control` (`Bus.control("orchestrator", op)`)."""

from __future__ import annotations

from typing import Any

import msgspec

from osiris_core.protocol import ControlOp, NoArgs

__all__ = ["OrchestratorOp", "PolicyArgs", "PolicyClearShadowOp", "PolicyOp", "PolicyOutcome",
           "PolicyPromoteOp", "PolicyReport", "PolicyRollbackArgs", "PolicyRollbackOp",
           "PolicyRules", "PolicyShadowArgs", "PolicyShadowOp", "PolicyState", "VariantArgs"]


class _Args(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class PolicyArgs(_Args, frozen=True):
    since: int = 0
    """Outcomes with a larger sequence number come back (1 << 62: none, only the slots)."""


class PolicyShadowArgs(_Args, frozen=True):
    variant: str = ""
    source: str | None = None
    """The variant's policy source (None: one the slots know already)."""


class VariantArgs(_Args, frozen=True):
    variant: str = ""


class PolicyRollbackArgs(_Args, frozen=True):
    variant: str | None = None
    """Serve this variant again (None or "": the previous one)."""
    reason: str = "by hand"


class PolicyState(msgspec.Struct, kw_only=True):
    """The slots after an op, and where the live outcomes stand."""

    live: str
    shadow: str | None = None
    previous: str | None = None
    live_sha256: str = ""
    params: dict[str, Any] = {}
    load_error: str | None = None
    open_outcomes: int = 0
    closed_outcomes: int = 0
    last_outcome: int = 0
    """The sequence number of the last closed outcome (ask `policy` with `since` below it)."""


class PolicyOutcome(msgspec.Struct, kw_only=True):
    """One closed run, decided by the live policy and (maybe) the shadow; returns in %."""

    seq: int
    live: str
    shadow: str | None = None
    live_return: float = 0.0
    shadow_return: float = 0.0
    live_approved: bool = False
    shadow_approved: bool = False
    violation: str | None = None
    shadow_violation: str | None = None
    shadow_error: str | None = None
    """The shadow could not decide (e.g. phi3 failed on its prompt): not a real decision."""
    closed_at: float = 0.0


class PolicyRules(msgspec.Struct, kw_only=True):
    """The decision rules a backtest must share with the live orchestrator."""

    query: str
    ticks_per_proposal: int
    max_length: int
    trade_horizon_bars: int
    risk: dict[str, Any] = {}


class PolicyReport(PolicyState, kw_only=True):
    """`policy`: the slots, the violations per variant, the outcomes since `since`, the
    rules."""

    violations: dict[str, int] = {}
    outcomes: list[PolicyOutcome] = []
    config: PolicyRules | None = None


class PolicyOp(ControlOp[PolicyReport], tag="policy"):
    args: PolicyArgs = PolicyArgs()


class PolicyShadowOp(ControlOp[PolicyState], tag="policy_shadow"):
    """Load a variant in shadow beside the live one (its top level runs bounded first)."""

    args: PolicyShadowArgs = PolicyShadowArgs()


class PolicyClearShadowOp(ControlOp[PolicyState], tag="policy_clear_shadow"):
    args: NoArgs = NoArgs()


class PolicyPromoteOp(ControlOp[PolicyState], tag="policy_promote"):
    """The shadow (or a known variant) becomes live; the live one becomes previous."""

    args: VariantArgs = VariantArgs()


class PolicyRollbackOp(ControlOp[PolicyState], tag="policy_rollback"):
    args: PolicyRollbackArgs = PolicyRollbackArgs()


OrchestratorOp = PolicyOp | PolicyShadowOp | PolicyClearShadowOp | PolicyPromoteOp | PolicyRollbackOp
"""The orchestrator's own control ops (the core's status, pause … aside)."""

"""The operator's hard limits (`[plugins.orchestrator.risk]`): applied after every policy's own
gate, live and in the dgm backtest alike; no policy variant can loosen them."""

from __future__ import annotations

from osiris_contracts.messages import TradeProposal

from .config import RiskConfig

__all__ = ["risk_gate"]


def risk_gate(p: TradeProposal, limits: RiskConfig) -> tuple[bool, list[str]]:
    """(approved, reasons): every violated limit is named with the value and the limit."""
    bad: list[str] = []
    if not limits.min_stop_pct <= p.new_stop_pct <= limits.max_stop_pct:
        bad.append(f"new_stop_pct {p.new_stop_pct:g} outside "
                   f"[{limits.min_stop_pct:g}, {limits.max_stop_pct:g}]")
    if p.new_target_pct > limits.max_target_pct:
        bad.append(f"new_target_pct {p.new_target_pct:g} above max {limits.max_target_pct:g}")
    if p.confidence < limits.min_confidence:
        bad.append(f"confidence {p.confidence:g} below min {limits.min_confidence:g}")
    if p.new_stop_pct > 0 and p.new_target_pct / p.new_stop_pct < limits.min_reward_risk:
        bad.append(f"reward/risk {p.new_target_pct / p.new_stop_pct:.2f} below min "
                   f"{limits.min_reward_risk:g}")
    if limits.allowed_sides and p.side.upper() not in {s.upper() for s in limits.allowed_sides}:
        bad.append(f"side {p.side!r} not in {limits.allowed_sides}")
    if limits.allowed_actions and p.action not in limits.allowed_actions:
        bad.append(f"action {p.action!r} not in {limits.allowed_actions}")
    if limits.allowed_tickers and p.ticker not in limits.allowed_tickers:
        bad.append(f"ticker {p.ticker!r} not in {limits.allowed_tickers}")
    if bad:
        return False, bad
    return True, [f"within limits (stop {p.new_stop_pct:g}%, target {p.new_target_pct:g}%, "
                  f"confidence {p.confidence:g})"]

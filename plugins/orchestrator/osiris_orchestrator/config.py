"""`[plugins.orchestrator]` and its risk limits `[plugins.orchestrator.risk]`."""

from __future__ import annotations

from typing import ClassVar

import msgspec

from osiris_core import PluginConfig

DEFAULT_QUERY = "Review the recent market action and propose a trade adjustment."


class RiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The risk gate's limits: a proposal outside any of them is rejected with the reason."""

    max_stop_pct: float = 10.0
    min_stop_pct: float = 0.5
    max_target_pct: float = 30.0
    min_confidence: float = 0.6
    min_reward_risk: float = 1.0
    """new_target_pct / new_stop_pct must reach this."""
    allowed_sides: list[str] = msgspec.field(default_factory=lambda: ["LONG", "SHORT"])
    """Compared case-insensitively; empty allows any."""
    allowed_actions: list[str] = []
    """Empty allows any action."""
    allowed_tickers: list[str] = []
    """Empty allows any ticker."""


class OrchestratorConfig(PluginConfig, frozen=True, kw_only=True):
    ticks_per_proposal: int = 10
    """Ticks buffered before a workflow run starts (seed flag --ticks_per_proposal)."""
    market_channel: str = "market.ticks"
    """Subject (and Redis channel) the ticks arrive on (seed flag --market_channel)."""
    redis_url: str = ""
    """Also read ticks straight from this Redis channel (seed flag --redis_url); empty: NATS
    only (the bridge plugin carries Redis ticks onto NATS)."""
    query: str = DEFAULT_QUERY
    """The question each tick-driven run asks."""
    max_length: int = 256
    """Tokens for phi3's proposal."""
    assess_max_length: int = 128
    """Tokens for hermes' assessment."""
    phi3_timeout_s: float = 120.0
    hermes_timeout_s: float = 120.0
    speak: bool = False
    """Ask the tts actor to read approved assessments aloud (audio.bytes)."""
    tts_timeout_s: float = 30.0
    risk: RiskConfig = msgspec.field(default_factory=RiskConfig)
    """The operator's hard limits: they apply after the policy's own gate, and no policy
    variant (the dgm kernel's included) can loosen them."""
    policy_dir: str = "policy"
    """Folder under data_dir holding the policy variants served live and in shadow."""
    trade_horizon_bars: int = 10
    """Bars a virtual position of an approved decision is held at most (live outcomes; the
    dgm backtest uses the same)."""
    variant_timeout_s: float = 2.0
    """Time bound of one call (summarise, prompt or decide) of a policy variant other than the
    shipped variant 0, which runs in a worker subprocess of its own: a call past it is cut,
    counted as a violation and the slot rolled back (live → previous, shadow → cleared).
    0 runs every variant in-process, unbounded."""
    variant_memory_mb: int = 256
    """Memory a variant's worker may allocate beyond its size at start (RLIMIT_AS); a call
    that runs out is cut like one past `variant_timeout_s`. 0: no memory bound."""
    policy_bucket: str = "OSIRIS_POLICY"
    """NATS KV bucket holding the policy slots (sources included) that every replica serves:
    a control op applied on one replica reaches all, and a replica started later takes the
    live slot from it. Empty: slots stay per replica (its data_dir only)."""

    __env__: ClassVar[dict[str, str]] = {"redis_url": "OSIRIS_ORCHESTRATOR_REDIS_URL"}

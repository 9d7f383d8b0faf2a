"""The orchestrator's policy, variant 0: what the dgm kernel may change.

Four functions decide a workflow run; the orchestrator calls them through
`osiris_orchestrator.policy.Policy`, which checks every value they return:

- `summarise(bars)`: the buffered market bars (dicts with timestamp, open, high, low, close,
  volume, symbol) as a few numbers a model can read;
- `prompt(query, market)`: the text phi3 is asked with;
- `postprocess(proposal, market)`: phi3's proposal (a dict) adjusted before the risk gate;
  it may add `size`, the fraction of a unit position (0–1);
- `gate(proposal, market)`: (approved, reasons). It must call `record("gate", ...)` once:
  that line is the audit trail the kernel checks.

Only `math` may be imported. The operator's hard limits (`[plugins.orchestrator.risk]`)
apply after `gate` and cannot be loosened here.
"""

import math

PARAMS = {
    "lookback": 0,
    "min_confidence": 0.0,
    "min_reward_risk": 0.0,
    "max_volatility_pct": 0.0,
    "stop_vol_mult": 0.0,
    "target_rr": 0.0,
    "trend_filter_pct": 0.0,
    "size": 1.0,
}


def summarise(bars):
    """query_market: the buffer (the last `lookback` bars when > 0) as a few numbers."""
    if PARAMS["lookback"] > 0:
        bars = bars[-int(PARAMS["lookback"]):]
    if not bars:
        return {"ticks": 0}
    closes = [b["close"] for b in bars]
    rets = [math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes)) if closes[i - 1] > 0]
    mean = sum(rets) / len(rets) if rets else 0.0
    vol = math.sqrt(sum((r - mean) ** 2 for r in rets) / len(rets)) if rets else 0.0
    first, last = bars[0], bars[-1]
    return {
        "ticks": len(bars), "symbol": last["symbol"], "from": first["timestamp"],
        "to": last["timestamp"], "open": first["open"], "close": last["close"],
        "high": max(b["high"] for b in bars), "low": min(b["low"] for b in bars),
        "volume": sum(b["volume"] for b in bars),
        "return_pct": round(100.0 * (last["close"] / first["open"] - 1.0), 4) if first["open"] else 0.0,
        "volatility_pct": round(100.0 * vol, 4),
    }


def market_text(m):
    """The summary in one line of English."""
    if not m.get("ticks"):
        return "no market data buffered."
    return (f"{m['symbol']} {m['ticks']} bars {m['from']} to {m['to']}: open {m['open']:.2f}, "
            f"close {m['close']:.2f}, high {m['high']:.2f}, low {m['low']:.2f}, return "
            f"{m['return_pct']:.2f}%, volatility {m['volatility_pct']:.2f}% per bar.")


def prompt(query, market):
    """generate_proposal: what phi3 is asked."""
    return f"{query}\nMarket: {market_text(market)}\nAnswer with one JSON trade proposal."


def postprocess(proposal, market):
    """Adjust the proposal: stops scaled to volatility, targets to a reward/risk, a size."""
    p = dict(proposal)
    vol = market.get("volatility_pct", 0.0)
    if PARAMS["stop_vol_mult"] > 0 and vol > 0:
        p["new_stop_pct"] = round(PARAMS["stop_vol_mult"] * vol, 4)
    if PARAMS["target_rr"] > 0:
        p["new_target_pct"] = round(PARAMS["target_rr"] * p["new_stop_pct"], 4)
    p["size"] = PARAMS["size"]
    return p


def gate(proposal, market):
    """risk_management: (approved, reasons); every failed check is named."""
    bad = []
    if proposal["confidence"] < PARAMS["min_confidence"]:
        bad.append(f"policy: confidence {proposal['confidence']:g} below {PARAMS['min_confidence']:g}")
    stop = proposal["new_stop_pct"]
    if stop > 0 and proposal["new_target_pct"] / stop < PARAMS["min_reward_risk"]:
        bad.append(f"policy: reward/risk below {PARAMS['min_reward_risk']:g}")
    vol = market.get("volatility_pct", 0.0)
    if PARAMS["max_volatility_pct"] > 0 and vol > PARAMS["max_volatility_pct"]:
        bad.append(f"policy: volatility {vol:g}% above {PARAMS['max_volatility_pct']:g}%")
    move = market.get("return_pct", 0.0)
    if PARAMS["trend_filter_pct"] > 0 and abs(move) > PARAMS["trend_filter_pct"]:
        against = (move > 0) != (str(proposal["side"]).upper() == "LONG")
        if against:
            bad.append(f"policy: {proposal['side']} against a {move:+.2f}% move")
    record("gate", approved=not bad, reasons=bad)
    return (not bad), bad

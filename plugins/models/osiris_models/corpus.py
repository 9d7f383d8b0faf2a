"""A small, fixed training corpus for the tiny tokenizer and calibration data (no downloads)."""

from __future__ import annotations

import json
import random

TICKERS = ["AAPL", "MSFT", "NVDA", "AMZN", "TSLA", "GOOG", "META", "XYZ", "SPY", "QQQ"]
ACTIONS = ["adjust", "hold", "close", "open", "reduce", "increase"]
SIDES = ["LONG", "SHORT"]
WORDS = (
    "the price market trend stop target risk volume momentum support resistance breakout "
    "rally pullback earnings guidance volatility position trade proposal rationale confidence "
    "suggests upward downward sideways moving average signal buyers sellers gap range close "
    "open high low week day hour bullish bearish neutral assess assessment hermes phi model "
    "is a an and or of to in on for with by at as it this that be are was were will should "
    "json schema ticker action side new pct you system user assistant please answer briefly"
).split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """`n` deterministic pseudo-market sentences with digits, punctuation and JSON."""
    rng = random.Random(seed)
    out: list[str] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            words = rng.choices(WORDS, k=rng.randint(6, 18))
            out.append(" ".join(words).capitalize() + rng.choice([".", "!", "?", ";", ","]))
        elif kind == 1:
            out.append(json.dumps({
                "ticker": rng.choice(TICKERS), "action": rng.choice(ACTIONS),
                "side": rng.choice(SIDES), "new_stop_pct": round(rng.uniform(0.5, 20), 1),
                "new_target_pct": round(rng.uniform(1, 50), 1),
                "confidence": round(rng.random(), 2),
                "rationale": " ".join(rng.choices(WORDS, k=6)),
            }))
        else:
            out.append(
                f"{rng.choice(TICKERS)} closed at {rng.uniform(10, 900):.2f} (+{rng.uniform(0, 9):.1f}%) "
                f"on {rng.randint(1000, 99999)} shares; stop {rng.randint(1, 20)}% / target "
                f"{rng.randint(2, 60)}% [{rng.choice(SIDES)}]: {rng.choice(WORDS)}-{rng.choice(WORDS)}."
            )
    return out

"""Test support shared by the dgm's test modules and benches (pytest imports test modules
by path, so they cannot import each other): a trending market and a parent policy with every
check on."""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from osiris_orchestrator.policy import default_source

from osiris_contracts.messages import StoreRows
from osiris_contracts.subjects import STORE_QUERY
from osiris_core.nats.bus import Bus


def trend_csv(path: Path, bars: int, drift: float, seed: int) -> Path:
    """A seeded hourly market CSV drifting by `drift` (log return) a bar."""
    rng = random.Random(seed)
    price = 100.0
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = ["timestamp,open,high,low,close,volume,symbol"]
    for i in range(bars):
        o = price
        price = price * math.exp(drift + rng.gauss(0.0, 0.002))
        hi, lo = max(o, price) * 1.001, min(o, price) * 0.999
        rows.append(f"{(t0 + timedelta(hours=i)).isoformat()},{o:.4f},{hi:.4f},"
                    f"{lo:.4f},{price:.4f},1000,SIM")
    path.write_text("\n".join(rows) + "\n")
    return path


def all_checks_on(source: str | None = None) -> str:
    """The shipped policy (or `source`) with every PARAMS check on, so the edit language
    offers scale and off for every key."""
    out = default_source() if source is None else source
    for key, value in (("lookback", "5"), ("min_confidence", "0.5"), ("min_reward_risk", "1.0"),
                       ("max_volatility_pct", "1.5"), ("stop_vol_mult", "1.0"),
                       ("target_rr", "2.0"), ("trend_filter_pct", "0.5")):
        out = re.sub(rf'("{key}": )[-0-9.]+', rf"\g<1>{value}", out)
    return out


async def archive_rows(bus: Bus, want: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The stored dgm archive once it holds `want` rows (or what it holds after `timeout`):
    the feedback actor stores the dgm's events asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        rows = (await bus.request(STORE_QUERY, {"table": "dgm_archive", "limit": 1000},
                                  reply_type=StoreRows)).rows
        if len(rows) >= want or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)

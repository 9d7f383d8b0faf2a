"""Replay bars onto a publisher, paced by the bars' own timestamps divided by the speed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from osiris_contracts.messages import MarketTick

__all__ = ["ReplayStats", "parse_speed", "replay"]

_enc = msgspec.json.Encoder()


def parse_speed(raw: str | float) -> float | None:
    """'10x' / '1x' / '0.5x' / '10' → factor; 'max' → None (as fast as the bus takes them)."""
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        s = raw.strip().lower()
        if s in ("max", "inf", "0"):
            return None
        try:
            value = float(s.removesuffix("x"))
        except ValueError:
            raise ValueError(f"invalid speed {raw!r}: use e.g. 1x, 10x, 0.5x or max") from None
    if value <= 0:
        return None
    return value


@dataclass
class ReplayStats:
    published: int = 0
    passes: int = 0
    started: float = field(default_factory=time.perf_counter)
    last_timestamp: str | None = None
    errors: int = 0
    last_error: str | None = None

    @property
    def rate(self) -> float:
        el = time.perf_counter() - self.started
        return self.published / el if el > 0 else 0.0


async def replay(
    bars: list[MarketTick],
    publish: Callable[[bytes], Awaitable[None]],
    *,
    speed: float | None,
    loop: bool = False,
    stats: ReplayStats | None = None,
    progress: Callable[[ReplayStats, int], None] | None = None,
    progress_every: int = 1000,
    flush: Callable[[], Awaitable[None]] | None = None,
    max_gap_s: float = 3600.0,
    gate: Callable[[], Awaitable[float]] | None = None,
) -> ReplayStats:
    """Publish every bar (JSON-encoded MarketTick) in order; `loop` restarts at the end.

    With a speed factor, the wait between two bars is their timestamp difference divided by
    the factor (gaps such as weekends are capped at `max_gap_s` of wall time). `speed=None`
    publishes back to back, yielding to the loop and flushing every `progress_every` bars.
    `gate` is awaited before each bar and returns the seconds it held the replay (a pause):
    the schedule moves on by as much, so a pause is not followed by a burst.
    """
    st = stats or ReplayStats()
    if not bars:
        return st
    times = [datetime.fromisoformat(b.timestamp).timestamp() for b in bars]
    while True:
        t0_wall = time.perf_counter()
        offset = 0.0
        prev = times[0]
        for i, bar in enumerate(bars):
            if gate is not None:
                t0_wall += await gate()
            if speed is not None:
                gap = max(times[i] - prev, 0.0) / speed
                offset += min(gap, max_gap_s)
                prev = times[i]
                delay = t0_wall + offset - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            try:
                await publish(_enc.encode(bar))
            except Exception as e:  # noqa: BLE001 - a failed publish is counted, replay goes on
                st.errors += 1
                st.last_error = f"{type(e).__name__}: {e}"
            else:
                st.published += 1
                st.last_timestamp = bar.timestamp
            if st.published % progress_every == 0:
                if flush is not None:
                    await flush()
                if progress is not None:
                    progress(st, len(bars))
                if speed is None:
                    await asyncio.sleep(0)
        st.passes += 1
        if flush is not None:
            await flush()
        if progress is not None:
            progress(st, len(bars))
        if not loop:
            return st

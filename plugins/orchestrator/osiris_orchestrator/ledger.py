"""How an approved proposal would have done: a virtual position under its own stop and target.

The trade opens at the close of the last bar the decision saw and is walked bar by bar: a bar
whose range reaches the stop closes it at the stop (checked before the target: when one bar
spans both, the worse is assumed), one that reaches the target closes it there, and after
`horizon` bars it closes at that bar's close. The return is in percent of the entry, times
the size. The dgm reward and the orchestrator's live tracking both use this module, so an
offline score and a live one mean the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from osiris_contracts.messages import MarketTick

__all__ = ["Trade", "open_trade", "walk"]

SIDES = {"LONG": 1.0, "SHORT": -1.0}


@dataclass
class Trade:
    direction: float
    entry: float
    stop_pct: float
    target_pct: float
    size: float
    horizon: int
    bars: int = 0
    closed: bool = False
    return_pct: float = 0.0
    exit: str = ""

    def step(self, bar: MarketTick) -> bool:
        """Advance one bar; True once the trade is closed."""
        if self.closed:
            return True
        self.bars += 1
        stop_px = self.entry * (1.0 - self.direction * self.stop_pct / 100.0)
        target_px = self.entry * (1.0 + self.direction * self.target_pct / 100.0)
        if self.direction > 0:
            hit_stop, hit_target = bar.low <= stop_px, bar.high >= target_px
        else:
            hit_stop, hit_target = bar.high >= stop_px, bar.low <= target_px
        if hit_stop:
            self._close(-self.stop_pct, "stop")
        elif hit_target:
            self._close(self.target_pct, "target")
        elif self.bars >= self.horizon:
            self._close(self.direction * 100.0 * (bar.close / self.entry - 1.0), "horizon")
        return self.closed

    def _close(self, move_pct: float, why: str) -> None:
        self.closed = True
        self.return_pct = self.size * move_pct
        self.exit = why


def open_trade(side: str, entry: float, stop_pct: float, target_pct: float, size: float,
               horizon: int) -> Trade | None:
    """A trade for an approved proposal, or None when it opens nothing (unknown side, size 0)."""
    direction = SIDES.get(side.upper())
    if direction is None or size <= 0 or entry <= 0:
        return None
    return Trade(direction=direction, entry=entry, stop_pct=max(0.0, stop_pct),
                 target_pct=max(0.0, target_pct), size=size, horizon=max(1, horizon))


def walk(trade: Trade | None, future: list[MarketTick]) -> float:
    """The trade's return over the bars after its entry (0.0 for no trade; an open trade at
    the end of the data is closed at the last close)."""
    if trade is None:
        return 0.0
    for bar in future:
        if trade.step(bar):
            return trade.return_pct
    if future:
        trade._close(trade.direction * 100.0 * (future[-1].close / trade.entry - 1.0), "end")
    return trade.return_pct

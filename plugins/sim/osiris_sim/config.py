"""`[plugins.sim]`: what the sim actor replays when it runs inside `osiris run` / `osiris demo`."""

from __future__ import annotations

from typing import ClassVar

from osiris_core import PluginConfig


class SimConfig(PluginConfig, frozen=True, kw_only=True):
    csv: str = ""
    """OHLCV CSV to replay; empty: the actor idles and says so in its status."""
    speed: str = "1x"
    """'1x', '10x', '0.5x' … (bar time / factor) or 'max' (as fast as the bus takes them)."""
    loop: bool = False
    """Start over at the end of the file."""
    from_date: str = ""
    """Skip bars before this date (YYYY-MM-DD)."""
    symbol: str = "SIM"
    """Symbol for rows whose CSV has no symbol column."""
    channel: str = "market.ticks"
    """Subject the ticks go to."""
    strict: bool = False
    """Refuse the whole file on its first bad row instead of skipping bad rows."""
    start_delay_s: float = 0.0
    """Wait this long after start before the first tick (lets the other actors come up)."""

    __env__: ClassVar[dict[str, str]] = {"csv": "OSIRIS_SIM_CSV"}

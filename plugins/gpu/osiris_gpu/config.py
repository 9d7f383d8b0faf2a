"""`[plugins.gpu]`: the budget, how often and how patiently it is enforced, and which actors
go first."""

from __future__ import annotations

from typing import Literal

from osiris_core import PluginConfig

GB = 1024**3


class GpuConfig(PluginConfig, frozen=True, kw_only=True):
    budget_gb: float = 10.5
    """Accelerator memory the model actors may use together (GiB, summed over `devices`)."""
    poll_s: float = 5.0
    """Seconds between probe reads; 0 turns timed polling off (control op `poll` still reads)."""
    over_budget_reads: int = 3
    """Consecutive over-budget reads before the supervisor pauses anything."""
    priorities: dict[str, int] = {}
    """actor → priority; lower is paused first, least recently used first among equals."""
    pinned: list[str] = []
    """Actors the supervisor never pauses (their memory still counts)."""
    footprints_gb: dict[str, float] = {}
    """actor → footprint, for actors whose facts do not report `bytes_resident` (otherwise
    the supervisor uses what they report, or the size of their weight files)."""
    probe: Literal["auto", "nvml", "actors"] = "auto"
    """`nvml` (driver numbers), `actors` (sum of the actors' resident bytes), `auto`: NVML when
    a GPU answers, else the actors."""
    devices: list[int] = []
    """NVML device indices counted against the budget; empty: all."""
    force: bool = False
    """Over budget with nothing idle: also pause actors mid-request (their requests fail)."""
    pause_timeout_s: float = 30.0
    """How long a pause waits for the victim's in-flight requests to finish."""
    confirm_timeout_s: float = 5.0
    """How long to wait for the probe to show the memory a pause freed."""
    min_resident_s: float = 0.25
    """A resumed actor with work is not drained again for someone else before this."""
    discover_window_s: float = 0.5
    """Scatter-gather window of `osiris.runtime.status` (answers end it early)."""
    max_concurrency: int = 16

    def __post_init__(self) -> None:
        if self.budget_gb <= 0:
            raise ValueError("budget_gb must be > 0")
        if self.over_budget_reads < 1:
            raise ValueError("over_budget_reads must be >= 1")
        if self.poll_s < 0:
            raise ValueError("poll_s must be >= 0 (0: no timed polling)")

    @property
    def budget_bytes(self) -> int:
        return int(self.budget_gb * GB)

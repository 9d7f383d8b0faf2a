"""The gpu supervisor's wire contracts: `osiris.gpu.events` and `osiris.gpu.status`.

Re-exported by `osiris_contracts.messages`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from osiris_core.protocol import Contract

__all__ = ["GpuActor", "GpuDevice", "GpuEvent", "GpuStatus"]


class GpuEvent(Contract):
    """`osiris.gpu.events`: over_budget, paused, resumed, cannot_fit."""

    kind: str
    actor: str | None = None
    used_bytes: int | None = None
    budget_bytes: int | None = None
    detail: str | None = None
    reads: int | None = None
    """over_budget: consecutive over-budget reads so far."""
    footprint_bytes: int | None = None
    """paused / resumed / cannot_fit: the actor's accelerator footprint."""
    freed_bytes: int | None = None
    """paused: how far the probe's reading went down (the confirmation)."""
    duration_s: float | None = None
    """paused / resumed: the actor's own pause_s / resume_s."""
    reason: str | None = None
    """paused: `over_budget` or `make_room:<actor>`; resumed: `wanted` or `manual`."""
    probe: str | None = None
    ts: float | None = None


class GpuDevice(msgspec.Struct, kw_only=True):
    """One accelerator as the probe sees it (NVML), or the actors' sum (`index` -1)."""

    index: int
    name: str
    used_bytes: int
    total_bytes: int | None = None
    processes: list[dict[str, Any]] = []


class GpuActor(msgspec.Struct, kw_only=True):
    """A model actor as the GPU supervisor manages it."""

    name: str
    state: str
    footprint_bytes: int | None = None
    resident_bytes: int | None = None
    last_used: float | None = None
    in_flight: int = 0
    priority: int = 0
    pinned: bool = False
    pauses: int = 0
    resumes: int = 0
    pause_s_total: float = 0.0
    resume_s_total: float = 0.0
    last_pause_s: float | None = None
    last_resume_s: float | None = None
    cannot_fit: str | None = None


class GpuStatus(msgspec.Struct, kw_only=True):
    """Reply of `osiris.gpu.status` (also the gpu actor's facts, so /health shows it)."""

    probe: str
    probe_error: str | None = None
    budget_bytes: int
    used_bytes: int | None = None
    over_reads: int = 0
    over_budget_reads: int = 3
    devices: list[GpuDevice] = []
    actors: list[GpuActor] = []
    events: dict[str, int] = {}

"""The kernel's live phase, one of three: idle, a candidate in shadow, a new live variant
monitored against the one it replaced. Persisted in state.json as `{"name": ..., ...}`."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Idle", "Monitoring", "Phase", "Shadow", "load_phase"]


class Idle(msgspec.Struct, frozen=True, kw_only=True, tag="idle", tag_field="name"):
    live: str = "0"
    hold: bool = False
    """Rolled back by hand: no automatic promotion until the next iteration."""


class Shadow(msgspec.Struct, frozen=True, kw_only=True, tag="shadow", tag_field="name"):
    candidate: str
    """The variant deciding in shadow beside the live one."""
    live: str
    since: int = 0
    """The orchestrator's last outcome when the shadow began: its decisions come after."""
    started: float = 0.0


class Monitoring(msgspec.Struct, frozen=True, kw_only=True, tag="monitoring",
                 tag_field="name"):
    candidate: str
    """The variant promoted: live now, compared with `replaced` (in shadow) on the same runs."""
    live: str
    replaced: str
    since: int = 0
    started: float = 0.0


Phase = Idle | Shadow | Monitoring


def load_phase(raw: Any) -> Phase:
    """The phase as state.json holds it (none: idle on the seed)."""
    phase: Phase = msgspec.convert(raw or {"name": "idle"}, Phase)
    return phase

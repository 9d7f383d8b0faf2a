"""Finding the model actors and their footprints: every runtime answers
`osiris.runtime.status`; an actor whose facts report `bytes_resident` or `model_path` (or that
`[plugins.gpu]` names) is a model actor."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from osiris_contracts.models import ModelFacts
from osiris_core.protocol import ActorStatus

WEIGHT_SUFFIXES = (".onnx", ".data", ".safetensors", ".bin", ".pt", ".gguf", ".onnx_data")


def is_model_actor(status: ActorStatus, named: set[str]) -> bool:
    model = ModelFacts.read(status.facts)
    return status.name in named or model.bytes_resident is not None or bool(model.model_path)


@dataclass
class Tracked:
    """What the supervisor knows about one model actor."""

    name: str
    node: str = ""
    state: str = "running"
    in_flight: int = 0
    last_used: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    reported: int | None = None
    """`bytes_resident` as last reported (None: the actor does not report it)."""
    measured: int | None = None
    """Largest `bytes_resident` ever reported: the footprint when paused."""
    freed: int | None = None
    """What the probe saw go away at the last pause (NVML)."""
    pauses: int = 0
    resumes: int = 0
    pause_s_total: float = 0.0
    resume_s_total: float = 0.0
    last_pause_s: float | None = None
    last_resume_s: float | None = None
    resumed_at: float = 0.0
    cannot_fit: str | None = None
    model: ModelFacts = field(default_factory=ModelFacts)
    """The typed view of `facts`, read once per update."""

    def update(self, status: ActorStatus, node: str) -> None:
        self.node, self.state, self.in_flight = node, status.state, status.in_flight
        self.last_used, self.facts = status.last_used, dict(status.facts or {})
        self.model = ModelFacts.read(self.facts)
        self.reported = self.model.bytes_resident
        if self.reported:
            self.measured = max(self.measured or 0, self.reported)

    @property
    def loaded(self) -> bool:
        return self.state == "running" and self.model.loaded is not False


_disk_cache: dict[str, tuple[float, int]] = {}


def weights_on_disk(path: str | None) -> int | None:
    """Bytes of weight files in a model folder (cached a minute): the footprint estimate of an
    actor that does not report its resident bytes."""
    if not path:
        return None
    hit = _disk_cache.get(path)
    if hit and time.monotonic() - hit[0] < 60:
        return hit[1]
    p = Path(path)
    try:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()
                                          and f.name.endswith(WEIGHT_SUFFIXES)]
        size = sum(f.stat().st_size for f in files) or None
    except OSError:
        size = None
    if size:
        _disk_cache[path] = (time.monotonic(), size)
    return size

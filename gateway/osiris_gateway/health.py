"""/health from the live actors: scatter `osiris.runtime.status`, every runtime answers.

A snapshot is kept for `health_cache_s` and concurrent callers share one refresh, so
polling every second costs one scatter-gather per window, whatever the number of pollers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import msgspec

from osiris_contracts.models import ModelFacts
from osiris_core.nats.bus import gather_nodes
from osiris_core.protocol import NodeStatus

from .schemas import HealthActor, HealthResponse

__all__ = ["HealthCollector", "summarise"]


def _actor(node: str, a: Any) -> HealthActor:
    facts = dict(a.facts or {})
    model = ModelFacts.read(facts)
    return HealthActor(
        name=a.name, node=node, plugin=a.plugin, state=a.state, restarts=a.restarts,
        in_flight=a.in_flight, handled=a.handled, errors=a.errors, last_error=a.last_error,
        loaded=model.loaded, device=model.device, adapter=model.adapter, facts=facts,
    )


def _loaded(actors: list[HealthActor], name: str) -> bool:
    for a in actors:
        if a.name != name or a.state not in ("running", "paused"):
            continue
        if a.loaded if a.loaded is not None else a.state == "running":
            return True
    return False


def summarise(nodes: list[NodeStatus], now: float | None = None) -> HealthResponse:
    actors = sorted((_actor(n.node, a) for n in nodes for a in n.actors),
                    key=lambda a: (a.name, a.node))
    hermes, phi3 = _loaded(actors, "hermes"), _loaded(actors, "phi3")
    phi3_file = any(bool(ModelFacts.read(a.facts).model_file_exists)
                    for a in actors if a.name == "phi3")
    device = next((a.device for name in ("hermes", "phi3") for a in actors
                   if a.name == name and a.device), None) or "cpu"
    device = device.split(":")[0]  # the seeds say "cuda" or "cpu"; actors keep "cuda:1"
    status: Literal["ok", "partial_error", "error"] = (
        "ok" if hermes and phi3 else "partial_error" if hermes or phi3 else "error")
    return HealthResponse(
        status=status, hermes_loaded=hermes, phi3_loaded=phi3, phi3_model_file_exists=phi3_file,
        device=device, nodes=len(nodes), actors=actors,
        checked_at=now if now is not None else time.time(), age_s=0.0,
    )


class HealthCollector:
    def __init__(self, bus_getter: Any, cache_s: float, window_s: float) -> None:
        self._bus = bus_getter
        self.cache_s = cache_s
        self.window_s = window_s
        self._snapshot: HealthResponse | None = None
        self._taken = 0.0
        self._refresh: asyncio.Task[HealthResponse] | None = None

    async def get(self) -> HealthResponse:
        now = time.monotonic()
        snap = self._snapshot
        if snap is not None and now - self._taken < self.cache_s:
            return msgspec.structs.replace(snap, age_s=round(now - self._taken, 3))
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._take())
        return await asyncio.shield(self._refresh)

    async def _take(self) -> HealthResponse:
        nodes = await gather_nodes(self._bus(), self.window_s)
        snap = summarise(nodes)
        self._snapshot, self._taken = snap, time.monotonic()
        return snap

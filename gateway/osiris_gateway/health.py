"""/health from the live actors: scatter `osiris.runtime.status`, every runtime answers.

A snapshot is kept for `health_cache_s` and concurrent callers share one refresh, so
polling every second costs one scatter-gather per window, whatever the number of pollers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import msgspec

from osiris_core.bus import Bus
from osiris_core.contracts import NodeStatus
from osiris_core.subjects import RUNTIME_STATUS

from .schemas import HealthActor, HealthResponse

__all__ = ["HealthCollector", "summarise"]

QUIET_S = 0.03  # after the last reply, how long to wait for another runtime to answer
_decode_node = msgspec.json.Decoder(NodeStatus)


async def gather_nodes(bus: Bus, window: float) -> list[NodeStatus]:
    """Every runtime's status: stop `QUIET_S` after the last reply, or after `window`."""
    nc = bus.nc
    inbox = nc.new_inbox()
    replies: list[NodeStatus] = []
    arrived = asyncio.Event()

    async def collect(msg: Any) -> None:
        try:
            replies.append(_decode_node.decode(msg.data))
        except msgspec.MsgspecError:
            return
        arrived.set()

    sub = await nc.subscribe(inbox, cb=collect)
    try:
        await nc.publish(RUNTIME_STATUS.name, b"", reply=inbox)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        wait = window
        while True:
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), max(min(wait, deadline - loop.time()), 0))
            except TimeoutError:
                break
            wait = QUIET_S
    finally:
        await sub.unsubscribe()
    return replies


def _actor(node: str, a: Any) -> HealthActor:
    facts = dict(a.facts or {})
    loaded = facts.get("loaded")
    adapter = facts.get("adapter", facts.get("active_adapter"))
    return HealthActor(
        name=a.name, node=node, plugin=a.plugin, state=a.state, restarts=a.restarts,
        in_flight=a.in_flight, handled=a.handled, errors=a.errors, last_error=a.last_error,
        loaded=bool(loaded) if loaded is not None else None,
        device=str(facts["device"]) if facts.get("device") is not None else None,
        adapter=str(adapter) if adapter is not None else None, facts=facts,
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
    phi3_file = any(bool(a.facts.get("model_file_exists")) for a in actors if a.name == "phi3")
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

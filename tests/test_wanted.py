"""The request gate announces a paused actor that requests wait for (`osiris.runtime.wanted`):
once per pause, again while requests keep waiting — the signal the gpu supervisor resumes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from osiris_core import Config
from osiris_core.nats.bus import Bus
from osiris_core.protocol import ActorWanted
from osiris_core.subjects import ACTOR_WANTED


async def _next(queue: asyncio.Queue[ActorWanted], timeout: float = 5.0) -> ActorWanted:
    return await asyncio.wait_for(queue.get(), timeout)


async def test_a_request_for_a_paused_actor_is_announced_once_per_pause(
    osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    got: asyncio.Queue[ActorWanted] = asyncio.Queue()

    async def cb(msg: Any) -> None:
        got.put_nowait(msgspec.json.decode(msg.data, type=ActorWanted))

    sub = await bus.nc.subscribe(ACTOR_WANTED.name, cb=cb)
    await bus.nc.flush()
    cfg = osiris_config(plugins=["example"])
    try:
        async with osiris_runtime(cfg) as rt:
            assert (await bus.request("osiris.example.echo", {"text": "a"}))["text"] == "a"
            assert got.empty()  # a running actor is never announced
            await bus.request("osiris.example.control", {"op": "pause"})
            first = asyncio.ensure_future(bus.request("osiris.example.echo", {"text": "b"}))
            evt = await _next(got)
            assert evt.actor == "example" and evt.node == rt.node and evt.waiting == 1
            # a second request within the same pause is not announced again right away
            second = asyncio.ensure_future(bus.request("osiris.example.echo", {"text": "c"}))
            await bus.request("osiris.example.control", {"op": "resume"})
            assert [(await first)["text"], (await second)["text"]] == ["b", "c"]
            assert got.empty()
            # the next pause announces afresh
            await bus.request("osiris.example.control", {"op": "pause"})
            third = asyncio.ensure_future(bus.request("osiris.example.echo", {"text": "d"}))
            assert (await _next(got)).actor == "example"
            # still waiting a second later: announced again (a supervisor that missed it)
            assert (await _next(got)).waiting == 1
            await bus.request("osiris.example.control", {"op": "resume"})
            assert (await third)["text"] == "d"
    finally:
        await sub.unsubscribe()

"""A poison durable event is dead-lettered after max_deliver tries; the consumer goes on;
`osiris deadletter replay` re-drives it once the handler is fixed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgspec

from osiris_contracts import tables
from osiris_contracts.messages import StoreQuery, StoreRows
from osiris_contracts.subjects import STORE_QUERY
from osiris_core import Actor, Config, EventMeta, on_event
from osiris_core.nats.bus import Bus, connect
from osiris_core.ops.deadletters import list_letters
from osiris_core.subjects import Subject
from osiris_core.testing import plugin_module


class Item(msgspec.Struct):
    n: int
    poison: bool = False


ITEMS = Subject("test.poison.items", "event", "poison", Item, durable=True)
STATE: dict[str, Any] = {"broken": True, "seen": set(), "tries": 0, "metas": []}


class PoisonActor(Actor[Any]):
    name = "poison"

    @on_event(ITEMS)
    async def take(self, item: Item, meta: EventMeta) -> None:
        if item.poison:
            STATE["tries"] += 1
            STATE["metas"].append(meta)
            if STATE["broken"]:
                raise RuntimeError(f"cannot digest item {item.n}")
        STATE["seen"].add(item.n)


PLUGIN = {"poison": plugin_module("poison", actors=[PoisonActor], subjects=[ITEMS])}


async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_poison_is_dead_lettered_the_rest_flows_and_replay_redrives_it(
    osiris_config: Callable[..., Config], osiris_runtime: Any, fresh_nats_url: str,
) -> None:
    STATE.update(broken=True, seen=set(), tries=0, metas=[])
    cfg = osiris_config(plugins=["poison", "feedback"], nats=fresh_nats_url,
                        tables={"poison": {"max_deliver": 3}})
    nc = await connect(fresh_nats_url)
    bus = Bus(nc)
    try:
        async with osiris_runtime(cfg, extra_plugins=PLUGIN) as rt:
            await bus.publish(ITEMS, Item(n=-1, poison=True), msg_id="poison-1")
            # a malformed one too: dead-lettered at once, never handed to the handler
            await bus.publish(ITEMS, b'{"n": "not a number"}', msg_id="garbled-1")
            for n in range(1000):
                await bus.publish(ITEMS, Item(n=n), msg_id=f"item-{n}")
            await _until(lambda: len(STATE["seen"]) == 1000, 60, "1,000 good items")
            await _until(lambda: rt.cell("poison").runner.dead_letters == 2, 30, "dead letters")
            letters = await list_letters(bus)
            by_id = {s.letter.msg_id: s for s in letters}
            assert set(by_id) == {"poison-1", "garbled-1"}
            poison = by_id["poison-1"].letter
            assert poison.attempts == 3 and STATE["tries"] == 3
            assert "cannot digest item -1" in poison.error
            assert poison.subject == ITEMS.name and poison.consumer == "poison_take"
            assert msgspec.json.decode(poison.payload) == {"n": -1, "poison": True}
            assert by_id["garbled-1"].letter.attempts == 1
            assert "field 'n'" in by_id["garbled-1"].letter.error
            cell = rt.cell("poison")
            assert cell.restarts == 0 and cell.state.value == "running"
            # the feedback store keeps the history in its `deadletter` table
            async def stored() -> list[dict[str, Any]]:
                return (await bus.request(STORE_QUERY, StoreQuery(table=tables.DEADLETTER),
                                          reply_type=StoreRows)).rows

            rows: list[dict[str, Any]] = []
            for _ in range(100):
                rows = await stored()
                if len(rows) == 2:
                    break
                await asyncio.sleep(0.1)
            assert {r["msg_id"] for r in rows} == {"poison-1", "garbled-1"}

            STATE["broken"] = False  # the handler is fixed: re-drive the poison
            assert cfg.path is not None
            seq = by_id["poison-1"].seq
            out = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", "from osiris_core.cli import main; main()",
                 "deadletter", "replay", str(seq), "-c", str(cfg.path)],
                capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert f"replayed {seq} on {ITEMS.name}" in out.stdout
            await _until(lambda: -1 in STATE["seen"], 20, "the replayed item")
            assert STATE["metas"][-1].msg_id == "poison-1"  # idempotency key kept
            left = await list_letters(bus)
            assert [s.letter.msg_id for s in left] == ["garbled-1"]
            listed = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", "from osiris_core.cli import main; main()",
                 "deadletter", "list", "-c", str(cfg.path)],
                capture_output=True, text=True, timeout=60)
            assert listed.returncode == 0 and "test.poison.items" in listed.stdout
            assert len(listed.stdout.strip().splitlines()) == 1
    finally:
        await nc.close()
